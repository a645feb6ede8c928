// Placeholder until the emulator lands.
pub fn run() {}
