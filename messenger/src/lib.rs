//! Chat (issue: messenger): 1:1 and group conversations, gap-free per-conversation sequence
//! numbers assigned by CAS at the conversation's home region, idempotent sends by client id,
//! exact resume, ephemeral typing and presence, the WebSocket protocol core (sans-IO).
