// The feed in a browser: log in with the form, infinite scroll through more than a page (every
// post once, newest first), the "new posts" button when the window gets focus back; friend
// requests on the People page (one sent and cancelled, one declined and one accepted with the
// keyboard) and the friends list, a block (which removes the follow), log out.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, openPage, rest, seriousViolations, startNode } from './harness.mjs';

let node;
let browser;
before(async () => {
  node = await startNode();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await node?.stop();
});

test('log in, scroll past the first page, new posts, log out', async () => {
  const password = 'correct horse battery';
  const writer = await rest(node.url, 'POST', '/v1/users', null, { handle: 'writer', password, display_name: 'Prolific Writer' });
  const reader = await rest(node.url, 'POST', '/v1/users', null, { handle: 'reader', password });
  await rest(node.url, 'PUT', `/v1/following/${writer.id}`, reader.token);
  for (let i = 1; i <= 25; i++) {
    await rest(node.url, 'POST', '/v1/posts', writer.token, { text: `post number ${i}` }, { 'idempotency-key': `p-${i}` });
  }

  const { context, page, errors } = await openPage(browser, node.url);
  await page.getByLabel('Handle').fill('reader');
  await page.getByLabel('Password').fill(password);
  await page.getByLabel('Password').press('Enter');
  await page.locator('#conn-status[data-status="online"]').waitFor();

  const posts = page.locator('#feed-list article.post .text');
  await page.locator('#feed-list article.post').nth(19).waitFor();
  assert.equal(await posts.count(), 20, 'one page first');
  await page.locator('.sentinel').scrollIntoViewIfNeeded();
  await page.locator('#feed-list article.post').nth(24).waitFor();
  const want = Array.from({ length: 25 }, (_, i) => `post number ${25 - i}`);
  assert.deepEqual(await posts.allTextContents(), want, 'every post once, newest first');

  await rest(node.url, 'POST', '/v1/posts', writer.token, { text: 'a fresh one' }, { 'idempotency-key': 'p-fresh' });
  await page.evaluate(() => window.dispatchEvent(new Event('focus')));
  await page.getByRole('button', { name: '1 new post' }).click();
  await page.locator('#feed-list article.post').first().filter({ hasText: 'a fresh one' }).waitFor();
  const after = await posts.allTextContents();
  assert.equal(after[0], 'a fresh one', 'the first page again, the new post on top');
  assert.equal(new Set(after).size, after.length, 'no post twice');
  assert.deepEqual(await seriousViolations(page), []);

  // A friend request from the writer's page: listed under "Sent" on People, cancelled there.
  await page.goto(`${node.url}/#/u/writer`);
  await page.getByRole('button', { name: 'Add friend' }).click();
  await page.locator('#notice', { hasText: 'Friend request sent to @writer.' }).waitFor();
  await page.getByRole('link', { name: 'People' }).click();
  const sent = page.getByRole('list', { name: 'Sent' });
  await sent.getByRole('link', { name: /@writer/ }).waitFor();
  await sent.getByRole('button', { name: 'Cancel request to @writer' }).click();
  await sent.getByText('No requests sent.').waitFor();
  assert.deepEqual((await rest(node.url, 'GET', '/v1/friend-requests?direction=outgoing', reader.token)).items, []);

  // Two requests received: the fan's declined, the writer's accepted, with the keyboard only
  // (declining moves the focus to the next request's first button).
  const fan = await rest(node.url, 'POST', '/v1/users', null, { handle: 'fan', password });
  await rest(node.url, 'POST', '/v1/friend-requests', fan.token, { to: reader.id });
  await rest(node.url, 'POST', '/v1/friend-requests', writer.token, { to: reader.id });
  await page.reload();
  const received = page.getByRole('list', { name: 'Received' });
  await received.getByRole('button', { name: 'Accept @writer' }).waitFor();
  await received.getByRole('button', { name: 'Decline @fan' }).waitFor();
  assert.deepEqual(await seriousViolations(page), [], 'people screen');
  await received.getByRole('button', { name: 'Decline @fan' }).focus();
  await page.keyboard.press('Enter');
  await page.locator('#notice', { hasText: 'Declined @fan’s request.' }).waitFor();
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('aria-label')), 'Accept @writer');
  await page.keyboard.press('Enter');
  await page.locator('#notice', { hasText: 'You and @writer are now friends.' }).waitFor();
  await received.getByText('No requests waiting.').waitFor();
  await page.getByRole('list', { name: 'Friends' }).getByRole('link', { name: /@writer/ }).waitFor();
  assert.deepEqual((await rest(node.url, 'GET', '/v1/friend-requests?direction=outgoing', fan.token)).items, [], 'declined');
  assert.deepEqual((await rest(node.url, 'GET', '/v1/friends', reader.token)).items.map((u) => u.handle), ['writer']);
  await page.reload();
  await page.getByRole('list', { name: 'Friends' }).getByRole('link', { name: /@writer/ }).waitFor();
  await page.getByRole('list', { name: 'Received' }).getByText('No requests waiting.').waitFor();

  // Blocking removes the follow: the page says so and the server agrees.
  await page.getByRole('list', { name: 'Friends' }).getByRole('link', { name: /@writer/ }).click();
  await page.locator('#follow-button', { hasText: 'Unfollow' }).waitFor();
  page.once('dialog', (d) => d.accept());
  await page.getByRole('button', { name: 'Block' }).click();
  await page.getByRole('button', { name: 'Unblock' }).waitFor();
  await page.locator('#follow-button', { hasText: 'Follow' }).waitFor();
  const following = await rest(node.url, 'GET', `/v1/users/${reader.id}/following`, reader.token);
  assert.deepEqual(following.items, []);

  // Log out: the page forgets the session and the server revokes its token.
  const token = await page.evaluate(() => JSON.parse(localStorage.getItem('starling.session') || '{}').token);
  assert.equal((await fetch(`${node.url}/v1/feed`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByRole('heading', { name: 'Log in to Starling' }).waitFor();
  await page.reload();
  await page.getByRole('heading', { name: 'Log in to Starling' }).waitFor();
  assert.equal((await fetch(`${node.url}/v1/feed`, { headers: { authorization: `Bearer ${token}` } })).status, 401);
  assert.deepEqual(errors, []);
  await context.close();
});
