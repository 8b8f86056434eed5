//! The Node service of `csi-node`: connects a published volume with the
//! kernel NVMe/TCP host, formats and mounts it (or hands over the raw block
//! device) and reports its stats (see the CSI driver issue and DESIGN.md
//! section 5).
//!
//! Not written yet: this module is filled by the node plugin's work.
