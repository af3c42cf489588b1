//! jetsam-report renders the pages people look at: `report.html` of a run
//! and `comparison.html` of a matrix. Pure rendering from core types to one
//! self-contained HTML string (inline CSS and SVG, no script, no network);
//! the harness reads the run folder and writes the files.
//!
//! Plots are drawn with `plotters` (SVG backend, no font files: the browser
//! lays out the text).

pub mod comparison;
pub mod plots;
pub mod run_page;
pub mod series;
pub mod timeline;
