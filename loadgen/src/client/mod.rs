//! The client side of one connection: URLs, control-plane placement, the socket with its
//! WebSocket framing, and the gateway's JSON frames.

pub mod conn;
pub mod frames;
pub mod pairing;
pub mod resolve;
pub mod url;
