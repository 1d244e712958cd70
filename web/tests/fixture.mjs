// What a test file runs against: a server (one `starling serve`, or a `starling cluster`) and
// chromium, set up before the file's tests and taken down after them whatever they did. Every
// browser test file starts from here, so none can forget to stop a process or remove a directory.
import { before, after } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launch } from './harness.mjs';

/**
 * The file's fixture, registered as its `before` and `after` hooks. `fx.browser` is launched
 * before the tests. With `start` (`startNode`, `startCluster`: anything that resolves to a
 * server with a `stop()`), `fx.server` is started before them too; without it a test starts its
 * own and leaves it in `fx.server` (and may replace it: a restart). With `dir` (a name prefix),
 * `fx.dir` is a new temporary directory for a node's data that outlives a node. After the tests:
 * the browser is closed, `fx.server` stopped, `fx.dir` removed, in that order.
 *
 * @param {{ start?: () => Promise<{ stop: () => Promise<void> }>, dir?: string }} [opts]
 */
export function fixture(opts = {}) {
  /** @type {{ server: any, browser: any, dir: string }} */
  const fx = {
    server: undefined,
    browser: undefined,
    dir: opts.dir ? mkdtempSync(join(tmpdir(), opts.dir)) : '',
  };
  before(async () => {
    if (opts.start) fx.server = await opts.start();
    fx.browser = await launch();
  });
  after(async () => {
    await fx.browser?.close();
    await fx.server?.stop();
    if (fx.dir) rmSync(fx.dir, { recursive: true, force: true });
  });
  return fx;
}
