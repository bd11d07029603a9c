//! Generated language reference. (stub, replaced by the parser work)
pub fn language_reference() -> String {
    String::new()
}
