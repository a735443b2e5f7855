//! Config sources: reading and watching YAML/JSON files, and the store all sources feed.

pub mod cache;
mod documents;
pub mod files;
pub mod parse_many;
pub mod store;
pub mod watch;

pub use cache::{FileCache, ReadStats, SharedRead};
pub use files::{discover, read_file, read_paths};
pub use store::ConfigStore;
pub use watch::{watch, ConfigWatch, WatchError};
