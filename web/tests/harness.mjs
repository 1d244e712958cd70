// Shared parts of the browser tests: real `starling serve` and `starling cluster` processes,
// chromium through playwright-core, a user signing up through the page, axe-core, screenshots.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const here = dirname(fileURLToPath(import.meta.url));
export const BIN = process.env.STARLING_BIN || join(here, '../../target/debug/starling');
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

/**
 * One `starling serve` on a port the kernel picks (read back from its ready line, so no other
 * process can take it in between); resolves once it listens. By default its store is in memory;
 * `{ dir, port }` runs the embedded store in `dir` on `port` instead (to restart a node where it
 * was, with its data). `stop()` ends it with SIGTERM (a clean shutdown).
 */
export async function startNode(extra = [], opts = {}) {
  const own = !opts.dir;
  const dir = opts.dir || mkdtempSync(join(tmpdir(), 'starling-web-'));
  const store = own ? ['--store', 'memory'] : [];
  let port = opts.port || 0;
  // STARLING_WEB_DIR=web serves the client from the directory (no rebuild while working on it).
  const web = process.env.STARLING_WEB_DIR ? ['--web-dir', process.env.STARLING_WEB_DIR] : [];
  const child = spawn(BIN, ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', join(dir, 'data'), ...store, '--auth-per-minute', '600', ...web, ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, STARLING_LOG: 'info' },
  });
  let log = '';
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`starling serve did not start:\n${log}`)), 60_000);
    const onData = (b) => {
      log += b;
      const m = /starling listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(log);
      if (m) {
        port = Number(m[1]);
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => reject(new Error(`starling serve exited (${code}):\n${log}`)));
  });
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    dir,
    log: () => log,
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => child.on('exit', r));
      }
      if (own) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A detached two-region `starling cluster` (one node per region, 100 ms apart). */
export async function startCluster() {
  const dir = mkdtempSync(join(tmpdir(), 'starling-web-cluster-'));
  // HTTP ports base, base+1; gossip base+1000, base+1001: a base with all four free, below the
  // kernel's ephemeral range (32768–) so no outgoing connection takes one before a node binds it.
  let base;
  for (let i = 0; i < 50 && !base; i++) {
    const b = 20000 + Math.floor(Math.random() * 10000);
    if ((await Promise.all([b, b + 1, b + 1000, b + 1001].map(isFree))).every(Boolean)) base = b;
  }
  if (!base) throw new Error('no free ports for the cluster');
  execFileSync(BIN, ['cluster', '--regions', 'us,eu', '--nodes-per-region', '1', '--base-port', String(base), '--rtt', 'us-eu=100ms', '--store', 'memory', '--dir', dir, '--detach'], { stdio: 'pipe' });
  const info = JSON.parse(readFileSync(join(dir, 'cluster.json'), 'utf8'));
  return {
    nodes: info.nodes,
    url: (region) => info.nodes.find((n) => n.region === region).http,
    logs: () => info.nodes.map((n) => `--- ${n.name}\n${readFileSync(n.log, 'utf8').slice(-4000)}`).join('\n'),
    stop: async () => {
      try {
        execFileSync(BIN, ['cluster', 'down', '--dir', dir], { stdio: 'pipe' });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

function isFree(port) {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** Debian's chromium, driven by playwright-core (no browser download). */
export function launch() {
  return chromium.launch({
    executablePath: process.env.STARLING_CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
}

/**
 * A browser context with one page, whose console errors (a CSP violation, an exception) are
 * collected in `errors`.
 */
export async function openPage(browser, url, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 820 }, ...options });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) errors.push(`console: ${m.text()}`);
  });
  await page.goto(url);
  return { context, page, errors };
}

/** Signs a new user up through the page's form. */
export async function signUp(page, handle, name) {
  await page.getByRole('button', { name: 'New here? Create an account' }).click();
  await page.getByLabel('Handle').fill(handle);
  await page.getByLabel('Password').fill('correct horse battery');
  await page.getByLabel('Display name (optional)').fill(name);
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.locator('#conn-status[data-status="online"]').waitFor();
}

/** Opens a user's profile through "People" → find by handle. */
export async function findUser(page, handle) {
  await page.getByRole('link', { name: 'People' }).click();
  await page.getByLabel('Find a user by handle').fill(handle);
  await page.getByRole('button', { name: 'Find' }).click();
  await page.locator('#profile-name').waitFor();
}

/** The texts of the messages shown in the open conversation, in order. */
export function messageTexts(page) {
  return page.locator('#messages li.msg:not(.event) .body').allTextContents();
}

/**
 * axe-core's serious and critical violations on the page as it is now (axe is evaluated
 * through the DevTools protocol, which the page's CSP does not govern).
 */
export async function seriousViolations(page) {
  await page.evaluate(AXE);
  const result = await page.evaluate(() => globalThis.axe.run(document, { resultTypes: ['violations'] }));
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).join('; ')}`);
}

/** Saves a screenshot when STARLING_SCREENSHOTS names a directory (docs/screenshots/). */
export async function screenshot(page, name) {
  const dir = process.env.STARLING_SCREENSHOTS;
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: join(dir, `${name}.png`) });
}

/** A 320×180 PNG (a sunset-like gradient), generated so the test needs no fixture file. */
export function png() {
  return execFileSync('python3', ['-c', `
import zlib, struct, sys
w, h = 320, 180
raw = b''.join(b'\\x00' + bytes(v for x in range(w) for v in (255 - y // 2, 90 + y // 2 + x // 8, 60 + x // 2)) for y in range(h))
def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
sys.stdout.buffer.write(b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))
`]);
}

/** One REST call to a node (for setting a scene up quickly); returns the parsed JSON body. */
export async function rest(url, method, path, token, body, headers = {}) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...headers,
    },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res.status === 204 ? null : res.json();
}
