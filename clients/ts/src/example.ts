// Type-checked in CI with the rest (`tsc --noEmit`): a session of the API through the typed
// client, so a change of the document that breaks a client's code breaks the build.
import { nextPage, starling, type Post, type Problem } from "./index";

export async function session(baseUrl: string): Promise<Post[]> {
  const anonymous = starling(baseUrl);
  const signedUp = await anonymous.POST("/v1/users", {
    body: { handle: "ada", password: "correct horse battery" },
  });
  if (!signedUp.data) {
    const problem: Problem | undefined = signedUp.error;
    throw new Error(problem?.detail ?? "sign-up failed");
  }
  const api = starling(baseUrl, signedUp.data.token);
  const created = await api.POST("/v1/posts", {
    params: { header: { "Idempotency-Key": "first-post" } },
    body: { text: "hello, world" },
  });
  const newest = created.data?.id;
  await api.PUT("/v1/following/{id}", { params: { path: { id: signedUp.data.id } } });
  const feed = await api.GET("/v1/feed", {
    params: { query: { limit: 20, ...(newest ? { since: newest } : {}) } },
  });
  const next = nextPage(feed.response);
  if (next) {
    await fetch(new URL(next, baseUrl));
  }
  const inbox = await api.GET("/v1/conversations", { params: { query: { limit: 10 } } });
  const since = inbox.data?.since_cursor;
  if (since) {
    await api.GET("/v1/conversations", { params: { query: { since } } });
  }
  return feed.data?.items ?? [];
}
