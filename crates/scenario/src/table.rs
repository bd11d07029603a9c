//! The one table that defines the scenario ops. (stub, replaced by the parser work)
pub struct OpSpec {
    pub name: &'static str,
    pub synopsis: &'static str,
    pub summary: &'static str,
    pub example: &'static str,
}
pub const OPS: &[OpSpec] = &[];
