//! The blocklist: which identities may not hold a session.
//!
//! A parsed file becomes an immutable [`Blocklist`]; the [`store`] swaps whole snapshots, so
//! a lookup never locks and never sees half a file.
//!
//! - `types`: entries and the list's lookups by id, address and domain
//! - `table`: the compact identity table, and the overlay an incremental reload puts on it
//! - `keys`: e-mail addresses and domains in one spelling
//! - `parse`: validation and collection of the items both readers yield; the readers are
//!   `scan` (line by line, the common shapes) and `raw` (serde-saphyr, everything else)
//! - [`diff`]: what changed between two lists
//! - [`incremental`]: a reload that reads only the changed lines
//! - `lint`: findings that do not make a list invalid
//! - [`edit`]: `kratos-gate block | unblock`
//! - [`source`]: where the bytes come from, and the list read at start-up
//! - [`store`]: the list in force, swapped whole on each reload; [`audit`]: what a reload
//!   changed

pub mod audit;
pub mod diff;
pub mod edit;
#[doc(hidden)]
pub mod incremental;
mod keys;
mod lint;
mod parse;
mod raw;
mod scan;
pub mod source;
pub mod store;
mod table;
mod types;

pub use diff::Changes;
pub use keys::{is_public_suffix, normalize_domain, normalize_email};
pub use parse::Parsed;
pub use types::{Blocklist, Entry, Matched, Metadata, Mode, METADATA_KEYS};
