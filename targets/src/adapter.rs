//! The adapter target kind (docs/adapter-protocol.md): a system jetsam was
//! not built for, described by a target file and driven through an external
//! adapter program: the target file's parser and template rules ([`spec`]),
//! a node's rendered templates ([`template`]), the checks of an adapter's
//! reply lines ([`reply`]), a running adapter process ([`process`]) and the
//! [`crate::Target`] the controller drives ([`target`]).

pub mod process;
pub mod reply;
pub mod spec;
pub mod target;
pub mod template;

pub use target::AdapterTarget;
