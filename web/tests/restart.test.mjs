// The node goes away under an open chat (stopped, then started again on the same port with its
// data): both pages say so, reconnect by themselves with backoff, resume, and a message written
// while the server was down is sent once it is back; every message shows exactly once, in order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fixture } from './fixture.mjs';
import { findUser, messageTexts, openPage, signUp, startNode } from './harness.mjs';

const fx = fixture({ dir: 'starling-web-restart-' });

test('a server restart: the pages reconnect and resume exactly', async () => {
  fx.server = await startNode([], { dir: fx.dir });
  const a = await openPage(fx.browser, fx.server.url);
  const b = await openPage(fx.browser, fx.server.url);
  await signUp(a.page, 'frank', 'Frank');
  await signUp(b.page, 'grace', 'Grace');
  await findUser(a.page, 'grace');
  await a.page.getByRole('button', { name: 'Message' }).click();
  await a.page.locator('#message-input').fill('before the restart');
  await a.page.keyboard.press('Enter');
  await a.page.locator('#messages li.msg[data-seq="1"]').waitFor();
  await b.page.getByRole('link', { name: /Chat/ }).click();
  await b.page.locator('#conv-list a.conv', { hasText: 'Frank' }).click();
  await b.page.locator('#messages li.msg', { hasText: 'before the restart' }).waitFor();

  const port = fx.server.port;
  await fx.server.stop();
  await a.page.locator('#conn-status[data-status="connecting"]').waitFor();
  await b.page.locator('#conn-status[data-status="connecting"]').waitFor();
  // Written while the server is down: shown at once, waiting.
  await a.page.locator('#message-input').fill('written while it was down');
  await a.page.keyboard.press('Enter');
  await a.page.locator('#messages li.pending', { hasText: 'written while it was down' }).waitFor();

  fx.server = await startNode([], { dir: fx.dir, port });
  await a.page.locator('#conn-status[data-status="online"]').waitFor({ timeout: 30_000 });
  await b.page.locator('#conn-status[data-status="online"]').waitFor({ timeout: 30_000 });
  await b.page.locator('#messages li.msg[data-seq="2"]').waitFor();
  await b.page.locator('#message-input').fill('welcome back');
  await b.page.keyboard.press('Enter');
  await a.page.locator('#messages li.msg[data-seq="3"]').waitFor();
  const expected = ['before the restart', 'written while it was down', 'welcome back'];
  assert.deepEqual(await messageTexts(a.page), expected);
  assert.deepEqual(await messageTexts(b.page), expected);
  assert.equal(await a.page.locator('#messages li.pending').count(), 0);
  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
});
