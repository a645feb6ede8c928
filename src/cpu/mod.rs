//! The CPU backend: one file per op family, rayon over planes or images, vectorisable inner loops.
pub mod adaptive;
pub mod backward;
pub mod reduce;
pub mod window;
