//! Reading, summarising and comparing training runs across seeds: the statistics
//! (confidence intervals, IQM, stratified bootstrap, threshold crossings, late-training
//! stability, rliable-style aggregates and performance profiles), method groups, the curves
//! and tables built from them, and the `analyze` / `compare` reports with their plots.

pub mod aggregates;
pub mod colors;
pub mod curves;
pub mod efficiency;
pub mod groups;
pub mod methods;
pub mod report;
pub mod results;
pub mod runs;
pub mod stability;
pub mod stats;
