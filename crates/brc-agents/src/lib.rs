//! Agents for multi-task value learning — Independent DQN, Shared DQN and BRC (BroNet + C51 +
//! AdamW) — behind one `Agent` trait so baselines compare on equal terms. (Being built.)
