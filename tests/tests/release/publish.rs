//! (filled in by the publish work)
