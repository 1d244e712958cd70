// A two-region `starling cluster` (us and eu, 100 ms apart): a user signed up in each region,
// each using their own region's node from their own browser context; they follow each other,
// see each other's posts and chat live across the regions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fixture } from './fixture.mjs';
import { messageTexts, openPage, signUp, startCluster } from './harness.mjs';

const fx = fixture({ start: startCluster });

/** Opens a profile by handle, retrying while the user has not replicated to this region. */
async function profileOf(page, handle) {
  for (let i = 0; i < 60; i++) {
    await page.goto(`${new URL(page.url()).origin}/#/u/${handle}`);
    await page.reload();
    await page.locator('main h1').waitFor();
    const found = (await page.locator('#profile-name').count()) > 0;
    if (found) return;
    await page.waitForTimeout(500);
  }
  throw new Error(`@${handle} never reached this region`);
}

test('a user in each region: posts and chat across regions', async (t) => {
  const us = await openPage(fx.browser, fx.server.url('us'));
  const eu = await openPage(fx.browser, fx.server.url('eu'));
  try {
    await signUp(us.page, 'ussie', 'Ussie in US');
    await signUp(eu.page, 'euro', 'Euro in EU');

    await profileOf(us.page, 'euro');
    await us.page.locator('#follow-button', { hasText: 'Follow' }).click();
    await us.page.locator('#follow-button', { hasText: 'Unfollow' }).waitFor();
    await profileOf(eu.page, 'ussie');
    await eu.page.locator('#follow-button', { hasText: 'Follow' }).click();
    await eu.page.locator('#follow-button', { hasText: 'Unfollow' }).waitFor();

    for (const [p, text] of [[eu.page, 'Bonjour from the eu region'], [us.page, 'Howdy from the us region']]) {
      await p.getByRole('link', { name: 'Feed' }).click();
      await p.getByLabel('Post text').fill(text);
      await p.getByRole('button', { name: 'Post', exact: true }).click();
      await p.locator('#notice', { hasText: 'Posted.' }).waitFor();
    }
    // Each sees the other's post once replication and fan-out have run (reloading the feed).
    for (const [p, text] of [[us.page, 'Bonjour from the eu region'], [eu.page, 'Howdy from the us region']]) {
      let seen = false;
      for (let i = 0; i < 60 && !seen; i++) {
        await p.goto(`${new URL(p.url()).origin}/#/feed`);
        await p.reload();
        await p.locator('#feed-list').waitFor();
        seen = await p.locator('article.post', { hasText: text }).waitFor({ timeout: 1000 }).then(() => true, () => false);
      }
      assert.ok(seen, `"${text}" reached the other region's feed`);
    }

    // Chat: us starts a 1:1 (homed in us), eu answers; both live.
    await profileOf(us.page, 'euro');
    await us.page.getByRole('button', { name: 'Message' }).click();
    await us.page.locator('#message-input').fill('hello across the ocean');
    await us.page.keyboard.press('Enter');
    await us.page.locator('#messages li.msg[data-seq="1"]').waitFor();
    let opened = false;
    for (let i = 0; i < 60 && !opened; i++) {
      await eu.page.goto(`${fx.server.url('eu')}/#/chat`);
      await eu.page.reload();
      opened = await eu.page.locator('#conv-list a.conv', { hasText: 'Ussie in US' }).waitFor({ timeout: 1000 }).then(() => true, () => false);
    }
    assert.ok(opened, 'the conversation reached eu');
    await eu.page.locator('#conv-list a.conv', { hasText: 'Ussie in US' }).click();
    await eu.page.locator('#messages li.msg', { hasText: 'hello across the ocean' }).waitFor();
    await eu.page.locator('#message-input').fill('hello back from eu');
    await eu.page.keyboard.press('Enter');
    await us.page.locator('#messages li.msg', { hasText: 'hello back from eu' }).waitFor();
    await eu.page.locator('#messages li.msg[data-seq="2"]').waitFor();
    await us.page.locator('#message-input').fill('and once more');
    await us.page.keyboard.press('Enter');
    await eu.page.locator('#messages li.msg', { hasText: 'and once more' }).waitFor();
    const expected = ['hello across the ocean', 'hello back from eu', 'and once more'];
    assert.deepEqual(await messageTexts(us.page), expected);
    assert.deepEqual(await messageTexts(eu.page), expected);
    assert.deepEqual(us.errors, []);
    assert.deepEqual(eu.errors, []);
  } catch (e) {
    t.diagnostic(fx.server.logs());
    throw e;
  } finally {
    await us.context.close();
    await eu.context.close();
  }
});
