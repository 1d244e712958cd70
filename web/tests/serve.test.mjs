// Two users in two browser contexts against one real `starling serve`: sign up, a bio and an
// avatar (uploaded, shown to the other, removed), follow, a post
// with an image reaching the other's feed, a chat both ways with live delivery, typing and read
// markers, then one side offline while the other sends: on reconnect the missed messages appear
// exactly once, in order, and what the offline side sent meanwhile is delivered once.
// axe-core on the main screens; screenshots when STARLING_SCREENSHOTS is set.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fixture } from './fixture.mjs';
import { findUser, messageTexts, openPage, png, screenshot, seriousViolations, signUp, startNode } from './harness.mjs';

const fx = fixture({ start: () => startNode() });

test('the binary serves the client, which runs without errors under its CSP', async () => {
  const res = await fetch(`${fx.server.url}/`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-security-policy'), /script-src 'self'/);
  const { context, page, errors } = await openPage(fx.browser, fx.server.url);
  await page.getByRole('heading', { name: 'Log in to Starling' }).waitFor();
  assert.deepEqual(await seriousViolations(page), []);
  await screenshot(page, 'login');
  // Keyboard only: Tab to the fields, Enter to submit; a refusal is said in the form.
  await page.keyboard.press('Tab');
  await page.keyboard.type('nobody');
  await page.keyboard.press('Tab');
  await page.keyboard.type('not the password');
  await page.keyboard.press('Enter');
  await page.locator('#auth-error[role="alert"]').filter({ hasText: /\S/ }).waitFor();
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'auth-password');
  assert.deepEqual(errors, []);
  await context.close();
});

test('two users: follow, a post with an image, chat live both ways, exact resume after going offline', async () => {
  const a = await openPage(fx.browser, fx.server.url);
  const b = await openPage(fx.browser, fx.server.url);
  await signUp(a.page, 'alice', 'Alice Liddell');
  await signUp(b.page, 'bob', 'Bob Marley');

  // Bob writes a bio and uploads an avatar on his profile; then removes the avatar (below).
  await b.page.getByRole('link', { name: 'Profile' }).click();
  await b.page.getByLabel('Bio', { exact: true }).fill('Reggae, sunsets\nand rooftops.');
  await b.page.getByLabel('Avatar image').setInputFiles({ name: 'me.png', mimeType: 'image/png', buffer: png() });
  await b.page.getByRole('img', { name: 'New avatar me.png' }).waitFor();
  await b.page.getByRole('button', { name: 'Save' }).click();
  await b.page.locator('#notice', { hasText: 'Profile saved.' }).waitFor();
  await b.page.locator('#profile-bio', { hasText: 'Reggae, sunsets' }).waitFor();
  await b.page.getByRole('img', { name: 'Avatar of @bob' }).waitFor();
  assert.equal(await b.page.getByLabel('Bio', { exact: true }).inputValue(), 'Reggae, sunsets\nand rooftops.');
  assert.deepEqual(await seriousViolations(b.page), [], 'own profile screen');

  // Alice finds Bob: his bio and avatar (the image fetched with her token); she follows him.
  await findUser(a.page, 'bob');
  await a.page.locator('#profile-bio', { hasText: 'Reggae, sunsets\nand rooftops.' }).waitFor();
  const avatar = a.page.getByRole('img', { name: 'Avatar of @bob' });
  await avatar.waitFor();
  await a.page.waitForFunction((el) => el.complete && el.naturalWidth === 320, await avatar.elementHandle());
  assert.equal(await a.page.getByRole('button', { name: 'Remove avatar' }).count(), 0, 'no editing of another user');
  await a.page.locator('#follow-button', { hasText: 'Follow' }).click();
  await a.page.locator('#follow-button', { hasText: 'Unfollow' }).waitFor();
  assert.deepEqual(await seriousViolations(a.page), [], 'profile screen');
  await screenshot(a.page, 'profile');

  // Bob removes his avatar: his initial again, for him and for Alice (after a reload).
  await b.page.getByRole('button', { name: 'Remove avatar' }).click();
  await b.page.locator('#notice', { hasText: 'Avatar removed.' }).waitFor();
  await b.page.locator('.profile .avatar', { hasText: 'B' }).waitFor();
  assert.equal(await b.page.getByRole('img', { name: 'Avatar of @bob' }).count(), 0);
  await a.page.reload();
  await a.page.locator('#profile-bio', { hasText: 'Reggae' }).waitFor();
  assert.equal(await a.page.getByRole('img', { name: 'Avatar of @bob' }).count(), 0);

  // Bob posts a text with an image.
  await b.page.getByRole('link', { name: 'Feed' }).click();
  await b.page.getByLabel('Post text').fill('Sunset from the roof, 7 pm');
  await b.page.locator('#compose-image').setInputFiles({ name: 'sunset.png', mimeType: 'image/png', buffer: png() });
  await b.page.getByRole('button', { name: 'Post', exact: true }).click();
  await b.page.locator('#notice', { hasText: 'Posted.' }).waitFor();

  // Alice sees it in her feed, image included (fetched with her token, shown from a blob URL).
  await a.page.getByRole('link', { name: 'Feed' }).click();
  const post = a.page.locator('article.post', { hasText: 'Sunset from the roof' });
  await post.waitFor();
  await post.locator('.user-link', { hasText: '@bob' }).waitFor();
  const img = post.locator('img.media');
  await img.waitFor();
  await a.page.waitForFunction((el) => el.complete && el.naturalWidth === 320, await img.elementHandle());
  assert.deepEqual(await seriousViolations(a.page), [], 'feed screen');
  await screenshot(a.page, 'feed');

  // Alice opens the post, likes it and replies; Bob sees both on his post.
  await post.locator('a.post-link').click();
  const like = a.page.locator('#thread-post button.like');
  await like.click();
  await a.page.locator('#thread-post button.like[aria-pressed="true"]', { hasText: '♥ 1' }).waitFor();
  await a.page.getByLabel('Reply text').fill('Lovely colours!');
  await a.page.getByRole('button', { name: 'Reply', exact: true }).click();
  await a.page.locator('#replies article.post', { hasText: 'Lovely colours!' }).waitFor();
  await a.page.locator('#likers', { hasText: 'Alice Liddell' }).waitFor();
  assert.deepEqual(await seriousViolations(a.page), [], 'thread screen');
  await screenshot(a.page, 'thread');
  await b.page.getByRole('link', { name: 'Profile' }).click();
  await b.page.locator('article.post', { hasText: 'Sunset from the roof' }).locator('a.post-link').click();
  await b.page.locator('#thread-post button.like[aria-pressed="false"]', { hasText: '♥ 1' }).waitFor();
  await b.page.locator('#replies article.post', { hasText: 'Lovely colours!' }).locator('.user-link', { hasText: '@alice' }).waitFor();

  // Alice opens a chat with Bob and writes; Bob sees the conversation, unread, and the message.
  await findUser(a.page, 'bob');
  await a.page.getByRole('button', { name: 'Message' }).click();
  await a.page.locator('#message-input').waitFor();
  await a.page.locator('#message-input').fill('hi bob');
  await a.page.keyboard.press('Enter');
  await a.page.locator('#messages li.msg[data-seq="1"]').waitFor();

  await b.page.getByRole('link', { name: /Chat/ }).click();
  const conv = b.page.locator('#conv-list a.conv', { hasText: 'Alice Liddell' });
  await conv.locator('.badge', { hasText: '1' }).waitFor();
  await conv.click();
  await b.page.locator('#messages li.msg', { hasText: 'hi bob' }).waitFor();

  // Bob's read marker reaches Alice ("Seen by"); Bob typing shows on Alice's side.
  await a.page.locator('.seen', { hasText: 'Bob Marley' }).waitFor();
  await b.page.locator('#message-input').pressSequentially('hi al', { delay: 20 });
  await a.page.locator('#typing', { hasText: 'Bob Marley is typing' }).waitFor();
  await b.page.locator('#message-input').fill('hi alice');
  await b.page.getByRole('button', { name: 'Send' }).click();
  await a.page.locator('#messages li.msg', { hasText: 'hi alice' }).waitFor();
  assert.deepEqual(await messageTexts(a.page), ['hi bob', 'hi alice']);
  assert.deepEqual(await seriousViolations(b.page), [], 'chat screen');
  await screenshot(a.page, 'chat');

  // Bob goes offline; Alice sends three messages; Bob writes one meanwhile (shown as sending).
  await b.context.setOffline(true);
  await b.page.locator('#conn-status[data-status="offline"]').waitFor();
  for (const t of ['while you were away 1', 'while you were away 2', 'while you were away 3']) {
    await a.page.locator('#message-input').fill(t);
    await a.page.keyboard.press('Enter');
  }
  await a.page.locator('#messages li.msg[data-seq="5"]').waitFor();
  assert.equal(await a.page.locator('#messages li.pending').count(), 0);
  await b.page.locator('#message-input').fill('written offline');
  await b.page.keyboard.press('Enter');
  await b.page.locator('#messages li.pending', { hasText: 'written offline' }).waitFor();
  await screenshot(b.page, 'chat-offline');

  // Back online: the missed messages exactly once, in order, then Bob's queued one, acked.
  await b.context.setOffline(false);
  await b.page.locator('#conn-status[data-status="online"]').waitFor();
  await b.page.locator('#messages li.msg[data-seq="6"]').waitFor();
  assert.equal(await b.page.locator('#messages li.pending').count(), 0);
  const expected = ['hi bob', 'hi alice', 'while you were away 1', 'while you were away 2', 'while you were away 3', 'written offline'];
  assert.deepEqual(await messageTexts(b.page), expected);
  await a.page.locator('#messages li.msg', { hasText: 'written offline' }).waitFor();
  assert.deepEqual(await messageTexts(a.page), expected);
  const seqs = await b.page.locator('#messages li.msg').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-seq'))));
  assert.deepEqual(seqs, [1, 2, 3, 4, 5, 6]);

  // Alice edits her first message, Bob deletes his offline one: both sides see both.
  await a.page.getByRole('button', { name: 'Edit “hi bob”' }).click();
  await a.page.getByLabel('Edit message').fill('hi bob, edited');
  await a.page.getByLabel('Edit message').press('Enter');
  b.page.once('dialog', (d) => d.accept());
  await b.page.getByRole('button', { name: 'Delete “written offline”' }).click();
  for (const p of [a.page, b.page]) {
    await p.locator('#messages li.msg[data-seq="1"] .body', { hasText: 'hi bob, edited' }).waitFor();
    await p.locator('#messages li.msg[data-seq="1"] .meta', { hasText: 'edited' }).waitFor();
    await p.locator('#messages li.msg[data-seq="6"] .body', { hasText: 'message deleted' }).waitFor();
  }
  const changed = ['hi bob, edited', ...expected.slice(1, 5), 'message deleted'];
  assert.deepEqual(await messageTexts(a.page), changed);
  assert.deepEqual(await messageTexts(b.page), changed);

  // A phone-sized viewport: one pane, navigation at the bottom.
  await a.page.setViewportSize({ width: 390, height: 780 });
  await screenshot(a.page, 'chat-phone');
  await a.page.getByRole('link', { name: '← All chats' }).click();
  await a.page.locator('#conv-list a.conv', { hasText: 'Bob Marley' }).waitFor();
  assert.deepEqual(await seriousViolations(a.page), [], 'chat list on a phone');

  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
  await a.context.close();
  await b.context.close();
});

test('a group: created, a member added and removed, messages reach members live', async () => {
  const a = await openPage(fx.browser, fx.server.url);
  const b = await openPage(fx.browser, fx.server.url);
  const c = await openPage(fx.browser, fx.server.url);
  await signUp(a.page, 'carol', 'Carol');
  await signUp(b.page, 'dave', 'Dave');
  await signUp(c.page, 'erin', 'Erin');
  await a.page.getByRole('link', { name: /Chat/ }).click();
  await a.page.getByText('New conversation').click();
  await a.page.getByLabel('With (handles)').fill('dave');
  await a.page.getByLabel('Group name').fill('Book club');
  await a.page.getByRole('button', { name: 'Start' }).click();
  await a.page.locator('#thread-title', { hasText: 'Book club' }).waitFor();
  await a.page.getByText('Members (2)').click();
  await a.page.getByLabel('Add', { exact: true }).fill('erin');
  await a.page.getByRole('button', { name: 'Add', exact: true }).click();
  await a.page.getByText('Members (3)').waitFor();
  await a.page.locator('#message-input').fill('welcome both');
  await a.page.keyboard.press('Enter');
  for (const p of [b.page, c.page]) {
    await p.getByRole('link', { name: /Chat/ }).click();
    await p.locator('#conv-list a.conv', { hasText: 'Book club' }).click();
    await p.locator('#messages li.msg', { hasText: 'welcome both' }).waitFor();
  }
  await screenshot(a.page, 'group');
  // Erin is removed: she sees the removal, Dave keeps getting messages.
  await a.page.getByText('Members (3)').click();
  await a.page.locator('.member-panel li', { hasText: 'Erin' }).getByRole('button', { name: 'Remove' }).click();
  await a.page.getByText('Members (2)').waitFor();
  await c.page.locator('#messages li.event', { hasText: 'removed' }).waitFor();
  await a.page.locator('#message-input').fill('just us now');
  await a.page.keyboard.press('Enter');
  await b.page.locator('#messages li.msg', { hasText: 'just us now' }).waitFor();
  assert.deepEqual(await messageTexts(c.page), ['welcome both']);
  for (const x of [a, b, c]) {
    assert.deepEqual(x.errors, []);
    await x.context.close();
  }
});
