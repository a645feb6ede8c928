//! The CPU backend: one file per op family, rayon over planes or images, vectorisable inner loops.
