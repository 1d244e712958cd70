// The feed in a browser: log in with the form, infinite scroll through more than a page (every
// post once, newest first), the "new posts" button when the window gets focus back; friend
// requests on the People page (one sent and cancelled, one declined and one accepted with the
// keyboard) and the friends list, a block (which removes the follow), log out. Notifications:
// the badge counts live while another user likes, replies, mentions and follows; the list
// (infinite scroll, the likes of one post folded, each entry linking to its post or profile)
// marks them read, which clears the badge for good; axe and a phone viewport. Reposts and quotes:
// a repost from a post's page and its undo, "reposted by" in a follower's feed, a quote shown
// with the post it quotes, the author notified of both.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fixture } from './fixture.mjs';
import { openPage, rest, screenshot, seriousViolations, startNode } from './harness.mjs';

const fx = fixture({ start: () => startNode() });

test('log in, scroll past the first page, new posts, log out', async () => {
  const password = 'correct horse battery';
  const writer = await rest(fx.server.url, 'POST', '/v1/users', null, { handle: 'writer', password, display_name: 'Prolific Writer' });
  const reader = await rest(fx.server.url, 'POST', '/v1/users', null, { handle: 'reader', password });
  await rest(fx.server.url, 'PUT', `/v1/following/${writer.id}`, reader.token);
  for (let i = 1; i <= 25; i++) {
    await rest(fx.server.url, 'POST', '/v1/posts', writer.token, { text: `post number ${i}` }, { 'idempotency-key': `p-${i}` });
  }

  const { context, page, errors } = await openPage(fx.browser, fx.server.url);
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

  await rest(fx.server.url, 'POST', '/v1/posts', writer.token, { text: 'a fresh one' }, { 'idempotency-key': 'p-fresh' });
  await page.evaluate(() => window.dispatchEvent(new Event('focus')));
  await page.getByRole('button', { name: '1 new post' }).click();
  await page.locator('#feed-list article.post').first().filter({ hasText: 'a fresh one' }).waitFor();
  const after = await posts.allTextContents();
  assert.equal(after[0], 'a fresh one', 'the first page again, the new post on top');
  assert.equal(new Set(after).size, after.length, 'no post twice');
  assert.deepEqual(await seriousViolations(page), []);

  // A friend request from the writer's page: listed under "Sent" on People, cancelled there.
  await page.goto(`${fx.server.url}/#/u/writer`);
  await page.getByRole('button', { name: 'Add friend' }).click();
  await page.locator('#notice', { hasText: 'Friend request sent to @writer.' }).waitFor();
  await page.getByRole('link', { name: 'People' }).click();
  const sent = page.getByRole('list', { name: 'Sent' });
  await sent.getByRole('link', { name: /@writer/ }).waitFor();
  await sent.getByRole('button', { name: 'Cancel request to @writer' }).click();
  await sent.getByText('No requests sent.').waitFor();
  assert.deepEqual((await rest(fx.server.url, 'GET', '/v1/friend-requests?direction=outgoing', reader.token)).items, []);

  // Two requests received: the fan's declined, the writer's accepted, with the keyboard only
  // (declining moves the focus to the next request's first button).
  const fan = await rest(fx.server.url, 'POST', '/v1/users', null, { handle: 'fan', password });
  await rest(fx.server.url, 'POST', '/v1/friend-requests', fan.token, { to: reader.id });
  await rest(fx.server.url, 'POST', '/v1/friend-requests', writer.token, { to: reader.id });
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
  assert.deepEqual((await rest(fx.server.url, 'GET', '/v1/friend-requests?direction=outgoing', fan.token)).items, [], 'declined');
  assert.deepEqual((await rest(fx.server.url, 'GET', '/v1/friends', reader.token)).items.map((u) => u.handle), ['writer']);
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
  const following = await rest(fx.server.url, 'GET', `/v1/users/${reader.id}/following`, reader.token);
  assert.deepEqual(following.items, []);

  // Log out: the page forgets the session and the server revokes its token.
  const token = await page.evaluate(() => JSON.parse(localStorage.getItem('starling.session') || '{}').token);
  assert.equal((await fetch(`${fx.server.url}/v1/feed`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByRole('heading', { name: 'Log in to Starling' }).waitFor();
  await page.reload();
  await page.getByRole('heading', { name: 'Log in to Starling' }).waitFor();
  assert.equal((await fetch(`${fx.server.url}/v1/feed`, { headers: { authorization: `Bearer ${token}` } })).status, 401);
  assert.deepEqual(errors, []);
  await context.close();
});

/** Logs in with the page's form and waits for the live connection. */
async function logIn(page, handle) {
  await page.getByLabel('Handle').fill(handle);
  await page.getByLabel('Password').fill('correct horse battery');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.locator('#conn-status[data-status="online"]').waitFor();
}

test('notifications: a live unread badge, the list with a grouped like, marked read on opening', async () => {
  const password = 'correct horse battery';
  const signUp = (handle, display_name) => rest(fx.server.url, 'POST', '/v1/users', null, { handle, password, display_name });
  const ann = await signUp('ann', 'Ann Author');
  const ben = await signUp('ben', 'Ben Two');
  const likers = [await signUp('cid', 'Cid Three'), await signUp('dee', 'Dee Four'), await signUp('eve', 'Eve Five'), await signUp('fay', 'Fay Six')];
  const post = await rest(fx.server.url, 'POST', '/v1/posts', ann.token, { text: 'Ann’s first post, about starlings' }, { 'idempotency-key': 'ann-1' });
  // 25 older mentions: more than a page, for the infinite scroll.
  for (let i = 1; i <= 25; i++) {
    await rest(fx.server.url, 'POST', '/v1/posts', ben.token, { text: `old mention ${i} of @ann` }, { 'idempotency-key': `ben-m-${i}` });
  }
  await rest(fx.server.url, 'PUT', '/v1/notifications/read', ann.token, { up_to: (await rest(fx.server.url, 'GET', '/v1/notifications?limit=1', ann.token)).items[0].id });

  const { context, page, errors } = await openPage(fx.browser, fx.server.url);
  await logIn(page, 'ann');
  const count = page.locator('#notifications-badge');
  await page.locator('#notifications-badge[data-count="0"]').waitFor({ state: 'attached' });
  await page.evaluate(() => { globalThis.notReloaded = true; });

  // Ben likes, replies, mentions and follows while Ann's feed is open: the badge counts each.
  await rest(fx.server.url, 'PUT', `/v1/posts/${post.id}/like`, ben.token);
  await count.locator('.badge', { hasText: '1' }).waitFor();
  const reply = await rest(fx.server.url, 'POST', '/v1/posts', ben.token, { text: 'What a murmuration!', reply_to: post.id }, { 'idempotency-key': 'ben-r' });
  await count.locator('.badge', { hasText: '2' }).waitFor();
  const mention = await rest(fx.server.url, 'POST', '/v1/posts', ben.token, { text: 'Look at this, @ann' }, { 'idempotency-key': 'ben-m' });
  await count.locator('.badge', { hasText: '3' }).waitFor();
  await rest(fx.server.url, 'PUT', `/v1/following/${ann.id}`, ben.token);
  await count.locator('.badge', { hasText: '4' }).waitFor();
  for (const u of likers) await rest(fx.server.url, 'PUT', `/v1/posts/${post.id}/like`, u.token);
  await count.locator('.badge', { hasText: '8' }).waitFor();
  assert.equal(await count.textContent(), '8 unread', 'the count and its words for screen readers');
  assert.equal(await page.evaluate(() => globalThis.notReloaded), true, 'counted live, without a reload');

  // Opened with the keyboard: newest first, the five likes folded into one entry.
  await page.getByRole('link', { name: /^Notifications/ }).focus();
  await page.keyboard.press('Enter');
  const list = page.getByRole('list', { name: 'Notifications' });
  const entries = list.locator('article.notification');
  await entries.nth(3).waitFor();
  const texts = (await entries.locator('.note-text').allTextContents()).slice(0, 5);
  assert.deepEqual(texts, [
    'New: Fay Six, Eve Five and 3 others liked your post.',
    'New: Ben Two followed you.',
    'New: Ben Two mentioned you.',
    'New: Ben Two replied to your post.',
    'Ben Two mentioned you.',
  ]);
  await entries.first().locator('.snippet', { hasText: 'Ann’s first post, about starlings' }).waitFor();
  await entries.nth(2).locator('.snippet', { hasText: 'Look at this, @ann' }).waitFor();
  assert.equal(await entries.first().getByRole('link', { name: 'Open the post' }).getAttribute('href'), `#/p/${post.id}`);
  assert.equal(await entries.nth(1).getByRole('link', { name: 'Ben Two' }).getAttribute('href'), '#/u/ben');
  assert.equal(await entries.nth(2).getByRole('link', { name: 'Open the post' }).getAttribute('href'), `#/p/${mention.id}`);
  assert.equal(await entries.nth(3).getByRole('link', { name: 'Open the reply' }).getAttribute('href'), `#/p/${reply.id}`);

  // Opening the list marked it read: the badge clears, the server agrees.
  await page.locator('#notifications-badge[data-count="0"]').waitFor({ state: 'attached' });
  assert.equal(await count.locator('.badge').count(), 0);
  assert.equal((await rest(fx.server.url, 'GET', '/v1/notifications?limit=1', ann.token)).unread_count, 0);
  assert.deepEqual(await seriousViolations(page), [], 'notifications screen');
  await page.evaluate(() => /** @type {HTMLElement} */ (document.activeElement)?.blur());
  await screenshot(page, 'notifications');

  // Infinite scroll: the older mentions, each once, newest first.
  await page.locator('.sentinel').scrollIntoViewIfNeeded();
  await list.locator('article.notification').nth(28).waitFor();
  const all = await entries.locator('.note-text').allTextContents();
  assert.equal(all.length, 29, 'the group, the follow, 26 mentions, the reply');
  assert.equal(all.filter((t) => t.endsWith('Ben Two mentioned you.')).length, 26);
  await entries.last().locator('.snippet', { hasText: 'old mention 1 of @ann' }).waitFor();
  const ids = await entries.evaluateAll((els) => els.map((e) => e.getAttribute('data-id')));
  assert.equal(new Set(ids).size, ids.length, 'no entry twice');

  // A notification while the list is scrolled down: offered with a button, not moved under the
  // reader; the button shows it at the top.
  await rest(fx.server.url, 'PUT', `/v1/following/${ann.id}`, likers[1].token);
  await page.getByRole('button', { name: 'New notifications' }).click();
  await entries.first().locator('.note-text', { hasText: 'Dee Four followed you.' }).waitFor();
  await page.getByRole('button', { name: 'New notifications' }).waitFor({ state: 'hidden' });

  // A notification while the list is open at its top: shown there at once, and read.
  await page.evaluate(() => window.scrollTo({ top: 0 }));
  await rest(fx.server.url, 'PUT', `/v1/following/${ann.id}`, likers[0].token);
  await entries.first().locator('.note-text', { hasText: 'Cid Three followed you.' }).waitFor();
  await page.waitForFunction(async (token) => {
    const r = await fetch('/v1/notifications?limit=1', { headers: { authorization: `Bearer ${token}` } });
    return (await r.json()).unread_count === 0;
  }, ann.token);

  // After a reload the badge stays clear, on the feed too.
  await page.getByRole('link', { name: 'Feed' }).click();
  await page.reload();
  await page.locator('#conn-status[data-status="online"]').waitFor();
  await page.locator('#notifications-badge[data-count="0"]').waitFor({ state: 'attached' });
  assert.equal(await count.locator('.badge').count(), 0);

  // The like entry leads to the post.
  await page.getByRole('link', { name: /^Notifications/ }).click();
  await entries.filter({ hasText: 'liked your post' }).getByRole('link', { name: 'Open the post' }).click();
  await page.locator('#thread-post article.post .text', { hasText: 'Ann’s first post' }).waitFor();
  assert.deepEqual(errors, []);
  await context.close();

  // A phone: a bell in the bottom navigation, still named "Notifications", its count live.
  const phone = await openPage(fx.browser, fx.server.url, { viewport: { width: 390, height: 780 } });
  await logIn(phone.page, 'ann');
  await phone.page.locator('#notifications-badge[data-count="0"]').waitFor({ state: 'attached' });
  await rest(fx.server.url, 'POST', '/v1/posts', likers[1].token, { text: 'Hello @ann from Dee' }, { 'idempotency-key': 'dee-m' });
  await phone.page.locator('#notifications-badge .badge', { hasText: '1' }).waitFor();
  await rest(fx.server.url, 'POST', '/v1/friend-requests', likers[1].token, { to: ann.id });
  await phone.page.locator('#notifications-badge .badge', { hasText: '2' }).waitFor();
  const nav = phone.page.getByRole('link', { name: 'Notifications 2 unread' });
  assert.ok(await nav.locator('.nav-icon').isVisible(), 'the bell');
  assert.ok(!(await nav.locator('.nav-text').isVisible()) || (await nav.locator('.nav-text').boundingBox())?.width <= 1, 'the word only for screen readers');
  await nav.click();
  const request = phone.page.getByRole('list', { name: 'Notifications' }).locator('article.notification').first();
  await request.locator('.note-text', { hasText: 'New: Dee Four sent you a friend request.' }).waitFor();
  assert.equal(await request.getByRole('link', { name: 'Answer it' }).getAttribute('href'), '#/people');
  await phone.page.getByRole('list', { name: 'Notifications' }).locator('.note-text', { hasText: 'Dee Four mentioned you.' }).waitFor();
  await phone.page.locator('#notifications-badge[data-count="0"]').waitFor({ state: 'attached' });
  assert.deepEqual(await seriousViolations(phone.page), [], 'notifications on a phone');
  await screenshot(phone.page, 'notifications-phone');
  assert.deepEqual(phone.errors, []);
  await phone.context.close();
});

test('reposts and quotes: repost and undo from a post, "reposted by" in a follower’s feed, a quote', async () => {
  const password = 'correct horse battery';
  const signUp = (handle, display_name) => rest(fx.server.url, 'POST', '/v1/users', null, { handle, password, display_name });
  const kit = await signUp('kit', 'Kit Writer');
  const lou = await signUp('lou', 'Lou Reposter');
  const max = await signUp('max', 'Max Reader');
  await rest(fx.server.url, 'PUT', `/v1/following/${lou.id}`, max.token);
  const post = await rest(fx.server.url, 'POST', '/v1/posts', kit.token, { text: 'Starlings gather at dusk' }, { 'idempotency-key': 'kit-1' });

  // Lou reposts Kit's post from its page.
  const l = await openPage(fx.browser, `${fx.server.url}/#/p/${post.id}`);
  await logIn(l.page, 'lou');
  const repost = l.page.locator('#thread-post button.repost');
  await repost.click();
  await l.page.locator('#thread-post button.repost[aria-pressed="true"]', { hasText: '⟳ 1' }).waitFor();
  await l.page.locator('#notice', { hasText: 'Reposted.' }).waitFor();

  // Max, who follows Lou, sees it in his feed as reposted by Lou, and quotes it.
  const m = await openPage(fx.browser, fx.server.url);
  await logIn(m.page, 'max');
  const card = m.page.locator('#feed-list article.post', { hasText: 'Starlings gather at dusk' });
  await card.locator('.reposted-by', { hasText: 'Reposted by Lou Reposter' }).waitFor();
  await card.locator('header .user-link', { hasText: '@kit' }).waitFor();
  assert.equal(await card.locator('.reposted-by a').getAttribute('href'), '#/u/lou');
  assert.deepEqual(await seriousViolations(m.page), [], 'a repost in the feed');
  await screenshot(m.page, 'repost');
  await card.getByRole('button', { name: 'Quote' }).click();
  await card.getByLabel('Quote text').fill('So true, every evening');
  await card.getByRole('button', { name: 'Post quote' }).click();
  await m.page.locator('#notice', { hasText: 'Quoted.' }).waitFor();
  const mine = await rest(fx.server.url, 'GET', `/v1/users/${max.id}/posts`, max.token);
  const quote = mine.items.find((p) => p.text === 'So true, every evening');
  assert.equal(quote?.quote_of, post.id, 'the quote names the post');

  // The quote's page shows the quoted post inside it, linking to it.
  await m.page.goto(`${fx.server.url}/#/p/${quote.id}`);
  const quoted = m.page.locator('#thread-post blockquote.quoted');
  await quoted.locator('.text', { hasText: 'Starlings gather at dusk' }).waitFor();
  assert.equal(await quoted.getByRole('link', { name: /open the quoted post/ }).getAttribute('href'), `#/p/${post.id}`);
  assert.deepEqual(await seriousViolations(m.page), [], 'a quote');

  // Kit hears of both.
  const k = await openPage(fx.browser, `${fx.server.url}/#/notifications`);
  await logIn(k.page, 'kit');
  const list = k.page.getByRole('list', { name: 'Notifications' });
  await list.locator('.note-text', { hasText: 'Max Reader quoted your post.' }).waitFor();
  await list.locator('.note-text', { hasText: 'Lou Reposter reposted your post.' }).waitFor();

  // Lou takes the repost back: the button and the server agree.
  await repost.click();
  await l.page.locator('#thread-post button.repost[aria-pressed="false"]', { hasText: '⟳ 0' }).waitFor();
  await l.page.locator('#notice', { hasText: 'Repost undone.' }).waitFor();
  assert.equal((await rest(fx.server.url, 'GET', `/v1/posts/${post.id}`, lou.token)).viewer.reposted, false);
  for (const x of [l, m, k]) {
    assert.deepEqual(x.errors, []);
    await x.context.close();
  }
});
