//! The adapter target kind (docs/adapter-protocol.md): a system jetsam was
//! not built for, described by a target file and driven through an external
//! adapter program. Today this holds the target file's parser and template
//! rules ([`spec`]), a node's rendered templates ([`template`]) and the
//! checks of an adapter's reply lines ([`reply`]);
//! the adapter process client and the [`crate::Target`] implementation are
//! still to come (issue 13).

pub mod reply;
pub mod spec;
pub mod template;
