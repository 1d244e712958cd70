// The 206 "still building" state, shown honestly: a node started on a seeded store (`starling
// seed`: user0 follows more accounts than a rebuild does inline), so user0's first feed read
// rebuilds their timeline and answers 206 with what is ready. The page says so, reads again by
// itself, and the banner goes once the timeline is complete (200).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { fixture } from './fixture.mjs';
import { BIN, openPage, rest, screenshot, seriousViolations, startNode } from './harness.mjs';

const fx = fixture({ dir: 'starling-web-seeded-' });

test('a timeline being rebuilt: the page says so, then fills in', async () => {
  execFileSync(BIN, ['seed', '--users', '600', '--follows', '300', '--posts', '1', '--data-dir', join(fx.dir, 'data')], { stdio: 'pipe' });
  fx.server = await startNode([], { dir: fx.dir });
  const me = await rest(fx.server.url, 'GET', '/v1/users/by-handle/user0', (await rest(fx.server.url, 'POST', '/v1/sessions', null, { handle: 'user1', password: 'password1' })).token);
  assert.ok(me.following_count > 200, `user0 follows more than a rebuild does inline (${me.following_count})`);

  const { context, page, errors } = await openPage(fx.browser, fx.server.url);
  await page.getByLabel('Handle').fill('user0');
  await page.getByLabel('Password').fill('password1');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.locator('#feed-building').waitFor();
  await page.locator('#feed-list article.post').first().waitFor();
  assert.deepEqual(await seriousViolations(page), []);
  await screenshot(page, 'feed-building');
  await page.locator('#feed-building').waitFor({ state: 'hidden', timeout: 30_000 });
  assert.ok((await page.locator('#feed-list article.post').count()) > 0);
  assert.deepEqual(errors, []);
  await context.close();
});
