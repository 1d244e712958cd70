//! The REST calls of `shared/API.md` that the scenarios, the setup and `verify` make, typed by
//! what they need back (ids as decimal strings, as on the wire).

use crate::error::RequestError;
use crate::http::Http;
use hyper::Method;
use serde_json::{Value, json};

/// A logged-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The user's id (decimal string).
    pub user_id: String,
    /// The bearer token.
    pub token: String,
}

fn field(v: &Value, name: &str) -> Result<String, RequestError> {
    v.get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| RequestError::Decode(format!("no string field {name:?}")))
}

fn body(v: &Value) -> Option<Vec<u8>> {
    Some(v.to_string().into_bytes())
}

/// `method url` with `json`, answered with a status in `ok`: the answer's JSON.
async fn call(
    http: &Http,
    method: Method,
    url: &str,
    token: Option<&str>,
    json: Option<Value>,
    ok: &[u16],
) -> Result<Value, RequestError> {
    http.expect(method, url, token, json.as_ref().and_then(body), ok)
        .await?
        .json()
}

/// `GET url` as `token`, answered 200: the answer's JSON.
async fn get(http: &Http, url: &str, token: &str) -> Result<Value, RequestError> {
    call(http, Method::GET, url, Some(token), None, &[200]).await
}

/// `method url` as `token` with `json`, answered 204 (no body to read).
async fn no_content(
    http: &Http,
    method: Method,
    url: &str,
    token: &str,
    json: Option<Value>,
) -> Result<(), RequestError> {
    http.expect(
        method,
        url,
        Some(token),
        json.as_ref().and_then(body),
        &[204],
    )
    .await
    .map(drop)
}

/// `PUT url` (`on`) or `DELETE url` as `token`, answered 204.
async fn put_or_delete(http: &Http, url: &str, token: &str, on: bool) -> Result<(), RequestError> {
    let method = if on { Method::PUT } else { Method::DELETE };
    no_content(http, method, url, token, None).await
}

/// A page's `items`.
fn items(v: &Value) -> Result<&Vec<Value>, RequestError> {
    v.get("items")
        .and_then(Value::as_array)
        .ok_or_else(|| RequestError::Decode("no items".into()))
}

/// `POST url` of a handle and password, answered `ok`: the session, its user id in `id`.
async fn session(
    http: &Http,
    url: &str,
    handle: &str,
    password: &str,
    ok: u16,
    id: &str,
) -> Result<Session, RequestError> {
    let json = json!({"handle": handle, "password": password});
    let v = call(http, Method::POST, url, None, Some(json), &[ok]).await?;
    Ok(Session {
        user_id: field(&v, id)?,
        token: field(&v, "token")?,
    })
}

/// `POST /v1/users`: signs up; a taken handle is `Status { status: 409, .. }`.
pub async fn sign_up(
    http: &Http,
    base: &str,
    handle: &str,
    password: &str,
) -> Result<Session, RequestError> {
    let url = format!("{base}/v1/users");
    session(http, &url, handle, password, 201, "id").await
}

/// `POST /v1/sessions`: logs in.
pub async fn log_in(
    http: &Http,
    base: &str,
    handle: &str,
    password: &str,
) -> Result<Session, RequestError> {
    let url = format!("{base}/v1/sessions");
    session(http, &url, handle, password, 200, "user_id").await
}

/// `GET /v1/notifications?limit=`, first page: the items' ids (decimal strings, newest first)
/// with whether each reads as read, and where the next page starts.
pub async fn notifications(
    http: &Http,
    base: &str,
    token: &str,
    limit: u32,
    cursor: Option<&str>,
) -> Result<(Vec<(String, bool)>, Option<String>), RequestError> {
    let mut url = format!("{base}/v1/notifications?limit={limit}");
    if let Some(c) = cursor {
        url.push_str("&cursor=");
        url.push_str(c);
    }
    let v = get(http, &url, token).await?;
    let items = items(&v)?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let read = item
            .get("read")
            .and_then(Value::as_bool)
            .ok_or_else(|| RequestError::Decode("a notification without read".into()))?;
        out.push((field(item, "id")?, read));
    }
    let next = v
        .get("next_cursor")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok((out, next))
}

/// `PUT /v1/notifications/read`: marks the caller's notifications up to `up_to` read.
pub async fn mark_read(
    http: &Http,
    base: &str,
    token: &str,
    up_to: &str,
) -> Result<(), RequestError> {
    let url = format!("{base}/v1/notifications/read");
    let json = json!({ "up_to": up_to });
    no_content(http, Method::PUT, &url, token, Some(json)).await
}

/// `PUT /v1/users/me/password`: changes the caller's password (their other sessions are
/// revoked, this one stays).
pub async fn change_password(
    http: &Http,
    base: &str,
    token: &str,
    old: &str,
    new: &str,
) -> Result<(), RequestError> {
    let url = format!("{base}/v1/users/me/password");
    let json = json!({ "old": old, "new": new });
    no_content(http, Method::PUT, &url, token, Some(json)).await
}

/// `DELETE /v1/users/me`: deletes the caller's account.
pub async fn delete_account(
    http: &Http,
    base: &str,
    token: &str,
    password: &str,
) -> Result<(), RequestError> {
    let url = format!("{base}/v1/users/me");
    let json = json!({ "password": password });
    no_content(http, Method::DELETE, &url, token, Some(json)).await
}

/// `GET /v1/users/me`: the status (200 while the session is valid, 401 once it is revoked).
pub async fn session_status(http: &Http, base: &str, token: &str) -> Result<u16, RequestError> {
    let url = format!("{base}/v1/users/me");
    let a = http
        .expect(Method::GET, &url, Some(token), None, &[200, 401])
        .await?;
    Ok(a.status)
}

/// `POST /v1/sessions`: the status alone (200 signed in, 401 refused).
pub async fn log_in_status(
    http: &Http,
    base: &str,
    handle: &str,
    password: &str,
) -> Result<u16, RequestError> {
    let a = http
        .expect(
            Method::POST,
            &format!("{base}/v1/sessions"),
            None,
            body(&json!({"handle": handle, "password": password})),
            &[200, 401],
        )
        .await?;
    Ok(a.status)
}

/// `GET /v1/users/{id}`: the user's `followers_count`.
pub async fn followers_count(
    http: &Http,
    base: &str,
    token: &str,
    id: &str,
) -> Result<u64, RequestError> {
    let v = get(http, &format!("{base}/v1/users/{id}"), token).await?;
    v.get("followers_count")
        .and_then(Value::as_u64)
        .ok_or_else(|| RequestError::Decode("a user without followers_count".into()))
}

/// `GET /v1/users/{id}`: the user's handle.
pub async fn handle_of(
    http: &Http,
    base: &str,
    token: &str,
    id: &str,
) -> Result<String, RequestError> {
    let v = get(http, &format!("{base}/v1/users/{id}"), token).await?;
    field(&v, "handle")
}

/// `GET /v1/users/{id}/followers`, every page: the followers' ids.
pub async fn followers(
    http: &Http,
    base: &str,
    token: &str,
    user: &str,
) -> Result<Vec<String>, RequestError> {
    let list = format!("{base}/v1/users/{user}/followers?limit=100");
    user_ids(http, token, &list).await
}

/// `PUT /v1/following/{id}`.
pub async fn follow(http: &Http, base: &str, token: &str, id: &str) -> Result<(), RequestError> {
    let url = format!("{base}/v1/following/{id}");
    no_content(http, Method::PUT, &url, token, None).await
}

/// `DELETE /v1/following/{id}`.
pub async fn unfollow(http: &Http, base: &str, token: &str, id: &str) -> Result<(), RequestError> {
    let url = format!("{base}/v1/following/{id}");
    no_content(http, Method::DELETE, &url, token, None).await
}

/// `POST /v1/posts`: returns the new post's id.
pub async fn post(
    http: &Http,
    base: &str,
    token: &str,
    text: &str,
) -> Result<String, RequestError> {
    let url = format!("{base}/v1/posts");
    let v = call(
        http,
        Method::POST,
        &url,
        Some(token),
        Some(json!({ "text": text })),
        &[201],
    );
    field(&v.await?, "id")
}

/// `DELETE /v1/posts/{id}` (its author's token).
pub async fn delete_post(
    http: &Http,
    base: &str,
    token: &str,
    id: &str,
) -> Result<(), RequestError> {
    let url = format!("{base}/v1/posts/{id}");
    no_content(http, Method::DELETE, &url, token, None).await
}

/// `GET /v1/feed?limit=`: returns how many posts the page held (206 while a cold timeline is
/// rebuilt is a success).
pub async fn feed(http: &Http, base: &str, token: &str, limit: u32) -> Result<usize, RequestError> {
    let url = format!("{base}/v1/feed?limit={limit}");
    let a = http
        .expect(Method::GET, &url, Some(token), None, &[200, 206])
        .await?;
    Ok(a.json()?
        .get("items")
        .and_then(Value::as_array)
        .map_or(0, Vec::len))
}

/// `GET /healthz`.
pub async fn health(http: &Http, base: &str) -> Result<(), RequestError> {
    http.expect(Method::GET, &format!("{base}/healthz"), None, None, &[200])
        .await
        .map(drop)
}

/// `GET {base}{path}`: `Ok(true)` if it is there, `Ok(false)` on 404.
async fn exists(http: &Http, base: &str, token: &str, path: &str) -> Result<bool, RequestError> {
    let url = format!("{base}{path}");
    let a = http
        .expect(Method::GET, &url, Some(token), None, &[200, 404])
        .await?;
    Ok(a.status == 200)
}

/// `GET /v1/posts/{id}`: `Ok(true)` if it is there, `Ok(false)` on 404.
pub async fn post_exists(
    http: &Http,
    base: &str,
    token: &str,
    id: &str,
) -> Result<bool, RequestError> {
    exists(http, base, token, &format!("/v1/posts/{id}")).await
}

/// `GET /v1/users/{id}/following`, every page: the ids the user follows.
pub async fn following(
    http: &Http,
    base: &str,
    token: &str,
    user: &str,
) -> Result<Vec<String>, RequestError> {
    let list = format!("{base}/v1/users/{user}/following?limit=100");
    user_ids(http, token, &list).await
}

/// `PUT` (`on`) or `DELETE /v1/posts/{id}/like`.
pub async fn like(
    http: &Http,
    base: &str,
    token: &str,
    post: &str,
    on: bool,
) -> Result<(), RequestError> {
    toggle(http, base, token, post, "like", on).await
}

/// `PUT` (`on`) or `DELETE /v1/posts/{id}/repost`.
pub async fn repost(
    http: &Http,
    base: &str,
    token: &str,
    post: &str,
    on: bool,
) -> Result<(), RequestError> {
    toggle(http, base, token, post, "repost", on).await
}

/// `PUT` (`on`) or `DELETE /v1/posts/{id}/{what}`.
async fn toggle(
    http: &Http,
    base: &str,
    token: &str,
    post: &str,
    what: &str,
    on: bool,
) -> Result<(), RequestError> {
    put_or_delete(http, &format!("{base}/v1/posts/{post}/{what}"), token, on).await
}

/// `GET /v1/posts/{id}/likes`, every page: the ids of the users who like the post.
pub async fn likers(
    http: &Http,
    base: &str,
    token: &str,
    post: &str,
) -> Result<Vec<String>, RequestError> {
    post_users(http, base, token, post, "likes").await
}

/// `GET /v1/posts/{id}/{list}` (`likes`, `reposts`), every page: the users' ids.
pub async fn post_users(
    http: &Http,
    base: &str,
    token: &str,
    post: &str,
    list: &str,
) -> Result<Vec<String>, RequestError> {
    let list = format!("{base}/v1/posts/{post}/{list}?limit=100");
    user_ids(http, token, &list).await
}

/// `GET /v1/posts/{id}`: the post's `counts.likes` as the node serving it derives them.
pub async fn like_count(
    http: &Http,
    base: &str,
    token: &str,
    post: &str,
) -> Result<u64, RequestError> {
    post_count(http, base, token, post, "likes").await
}

/// `GET /v1/posts/{id}`: the post's `counts.{which}` as the node serving it derives them.
pub async fn post_count(
    http: &Http,
    base: &str,
    token: &str,
    post: &str,
    which: &str,
) -> Result<u64, RequestError> {
    let v = get(http, &format!("{base}/v1/posts/{post}"), token).await?;
    v.pointer(&format!("/counts/{which}"))
        .and_then(Value::as_u64)
        .ok_or_else(|| RequestError::Decode(format!("a post without counts.{which}")))
}

/// Every page of a list of users (`list` ends in its query, `limit` included): their ids.
async fn user_ids(http: &Http, token: &str, list: &str) -> Result<Vec<String>, RequestError> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = list.to_string();
        if let Some(c) = &cursor {
            url.push_str("&cursor=");
            url.push_str(c);
        }
        let v = get(http, &url, token).await?;
        let items = items(&v)?;
        for item in items {
            ids.push(field(item, "id")?);
        }
        match v.get("next_cursor").and_then(Value::as_str) {
            Some(c) if !items.is_empty() => cursor = Some(c.to_string()),
            _ => return Ok(ids),
        }
    }
}

/// `POST /v1/conversations`: returns the conversation's id.
pub async fn create_conversation(
    http: &Http,
    base: &str,
    token: &str,
    members: &[String],
) -> Result<String, RequestError> {
    let url = format!("{base}/v1/conversations");
    let json = json!({ "members": members });
    field(
        &call(
            http,
            Method::POST,
            &url,
            Some(token),
            Some(json),
            &[200, 201],
        )
        .await?,
        "id",
    )
}

/// `POST /v1/conversations` with a name: a group owned by the caller, with `members`; returns
/// its id.
pub async fn create_group(
    http: &Http,
    base: &str,
    token: &str,
    members: &[String],
    name: &str,
) -> Result<String, RequestError> {
    let url = format!("{base}/v1/conversations");
    let json = json!({ "members": members, "name": name });
    field(
        &call(http, Method::POST, &url, Some(token), Some(json), &[201]).await?,
        "id",
    )
}

/// `PUT` (`member`) or `DELETE /v1/conversations/{conv}/members/{user}`: `user` is (or is not)
/// a member (idempotent).
pub async fn set_member(
    http: &Http,
    base: &str,
    token: &str,
    conv: &str,
    user: &str,
    member: bool,
) -> Result<(), RequestError> {
    let url = format!("{base}/v1/conversations/{conv}/members/{user}");
    put_or_delete(http, &url, token, member).await
}

/// `GET /v1/conversations/{conv}`: the ids of its members.
pub async fn members(
    http: &Http,
    base: &str,
    token: &str,
    conv: &str,
) -> Result<Vec<String>, RequestError> {
    let v = get(http, &format!("{base}/v1/conversations/{conv}"), token).await?;
    v.get("members")
        .and_then(Value::as_array)
        .ok_or_else(|| RequestError::Decode("no members".into()))?
        .iter()
        .map(|m| field(m, "id"))
        .collect()
}

/// `GET /v1/users/{id}`: `Ok(true)` if the user is there, `Ok(false)` on 404.
pub async fn user_exists(
    http: &Http,
    base: &str,
    token: &str,
    id: &str,
) -> Result<bool, RequestError> {
    exists(http, base, token, &format!("/v1/users/{id}")).await
}

/// A stored entry of a conversation's log (a chat message, or an event such as an edit or a
/// membership change) as `verify` needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its sequence number in the conversation.
    pub seq: u64,
    /// Its id.
    pub id: String,
    /// `text` for a chat message; `edit`, `delete`, `member_added`, `member_removed`, … for the
    /// other entries of the log.
    pub kind: String,
    /// Its current text (a chat message's as last edited).
    pub body: String,
}

/// `POST /v1/conversations/{conv}/messages`: returns the stored message (a repeated `client_id`
/// returns the original).
pub async fn send_message(
    http: &Http,
    base: &str,
    token: &str,
    conv: &str,
    client_id: &str,
    text: &str,
) -> Result<StoredMessage, RequestError> {
    let url = format!("{base}/v1/conversations/{conv}/messages");
    let json = json!({ "body": text, "client_id": client_id });
    stored_message(
        &call(
            http,
            Method::POST,
            &url,
            Some(token),
            Some(json),
            &[200, 201],
        )
        .await?,
    )
}

/// `PATCH /v1/conversations/{conv}/messages/{seq}`: edits one's own message to `text`; returns
/// the message as edited (a retry with the same `client_id` answers the same edit).
pub async fn edit_message(
    http: &Http,
    base: &str,
    token: &str,
    conv: &str,
    seq: u64,
    client_id: &str,
    text: &str,
) -> Result<StoredMessage, RequestError> {
    let url = format!("{base}/v1/conversations/{conv}/messages/{seq}");
    let json = json!({ "body": text, "client_id": client_id });
    stored_message(&call(http, Method::PATCH, &url, Some(token), Some(json), &[200]).await?)
}

fn stored_message(v: &Value) -> Result<StoredMessage, RequestError> {
    let text = |name: &str, absent: &str| {
        v.get(name)
            .and_then(Value::as_str)
            .unwrap_or(absent)
            .to_string()
    };
    Ok(StoredMessage {
        seq: v
            .get("seq")
            .and_then(Value::as_u64)
            .ok_or_else(|| RequestError::Decode("no numeric field \"seq\"".into()))?,
        id: field(v, "id")?,
        kind: text("kind", "text"),
        body: text("body", ""),
    })
}

/// A conversation's log as read back: the first seq the server keeps (its history retention's
/// floor; 1 when nothing is trimmed) and every entry from it, ascending.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// Entries below it are past the history retention (`first_seq` of the last page read).
    pub first_seq: u64,
    /// The entries from it.
    pub items: Vec<StoredMessage>,
}

/// `GET /v1/conversations/{conv}/messages` page after page from `after_seq=0`. A page whose
/// `first_seq` (the retention's floor) is past what was read drops what was read: the floor
/// moved up meanwhile and those entries are trimmed now.
pub async fn messages(
    http: &Http,
    base: &str,
    token: &str,
    conv: &str,
) -> Result<History, RequestError> {
    let mut out = History {
        first_seq: 1,
        items: Vec::new(),
    };
    loop {
        let after = out.items.last().map_or(0, |m| m.seq);
        let url = format!("{base}/v1/conversations/{conv}/messages?after_seq={after}&limit=100");
        let v = get(http, &url, token).await?;
        let first_seq = v.get("first_seq").and_then(Value::as_u64).unwrap_or(1);
        if first_seq > out.first_seq {
            out.first_seq = first_seq;
            out.items.retain(|m| m.seq >= first_seq);
        }
        let items = items(&v)?;
        if items.is_empty() {
            return Ok(out);
        }
        for item in items {
            out.items.push(stored_message(item)?);
        }
    }
}
