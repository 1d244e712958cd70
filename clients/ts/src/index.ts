// A typed client of Starling's REST API. `schema.d.ts` is generated from the server's
// /openapi.json by ../generate.sh (do not edit it); requests go through openapi-fetch, so a
// path, a parameter or a body the document does not describe is a type error.
import createClient, { type Client, type ClientOptions } from "openapi-fetch";
import type { components, paths } from "./schema";

export type { components, paths };

/** An error answer (RFC 9457 problem details): every 4xx and 5xx of the API. */
export type Problem = components["schemas"]["Problem"];
/** A user as the API shows it. */
export type User = components["schemas"]["UserView"];
/** A post as the API shows it. */
export type Post = components["schemas"]["PostView"];

/** A client of one node. With a token, every request carries `Authorization: Bearer <token>`. */
export function starling(
  baseUrl: string,
  token?: string,
  options: Omit<ClientOptions, "baseUrl"> = {},
): Client<paths> {
  const headers: Record<string, string> = token ? { Authorization: `Bearer ${token}` } : {};
  return createClient<paths>({ ...options, baseUrl, headers });
}

/** The URL of the next page of a list, from its `Link: <…>; rel="next"` header (null on the last). */
export function nextPage(response: Response): string | null {
  const link = response.headers.get("Link");
  const match = link?.match(/<([^>]*)>\s*;\s*rel="next"/);
  return match?.[1] ?? null;
}
