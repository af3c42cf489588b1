//! Disk faults: bit flips and truncation of a stopped node's data files.
