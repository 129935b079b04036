//! Analysis of brc runs across seeds. So far: the statistics that `brc analyze` and
//! `brc compare` report (see [`stats`]).

pub mod runs;
pub mod stats;
