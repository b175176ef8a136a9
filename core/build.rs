//! `sqlx::migrate!` embeds the migration files when the crate compiles: a migration added
//! without a change to the code must still rebuild it.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
