//! Network faults: one TCP proxy per directed link between nodes; partition blackholes links, heal restores them.
