//! Posts (issue: social core): create with idempotency keys, read, edit, delete (tombstones),
//! per-author lists newest first, media references. Posts are last-writer-wins registers that
//! replicate to every region. Talks only to `starling_store`.
