//! `GET /llms.txt` (SPEC §16): a plain-text guide to the API for language models,
//! generated from the OpenAPI document when the router is built, so it lists exactly
//! the operations the server serves, with their parameters and what each answers.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{OpenApi, RefOr};

const HEAD: &str = "# Sendmux API\n\n\
> Multi-tenant email API: send through your own providers, receive into mailboxes, read \
conversations (threads), search, reply from a mailbox, and follow a mailbox live (SSE \
or WebSocket).\n\n\
Conventions: base URL /api/v1; `Authorization: Bearer <key or session>` (smx_inf_ \
infrastructure, smx_snd_ sending, smx_mbx_ mailbox keys, smx_ses_ sessions); JSON in \
and out; lists take `limit` (1..100) and `cursor` and answer `{data, next_cursor}`, \
newest first; errors are `{\"error\": {type, message, param, request_id}}`; ids are \
prefixed ULIDs (msg_, thr_, mbx_, evt_ …). Full schema: /api/v1/openapi.json.\n\n\
Agents with a mailbox key: GET /api/v1/mailbox/threads and /threads/{id} for \
conversations (each message has `extracted_text`, the new text without quoted \
history); GET /api/v1/mailbox/messages?q=…&thread_id=…&since=…&until=… to search; \
with `mailbox.send`, POST /api/v1/mailbox/messages/{id}/reply, …/forward and \
POST /api/v1/mailbox/send (ask the person before sending to someone new; a 403 \
names the send_policy rule that refused it); live events on GET \
/api/v1/mailbox/events (SSE) or wss …/api/v1/mailbox/events/ws (one JSON event per \
text frame; resume with last_event_id).\n\n\
MCP: POST /mcp speaks the Model Context Protocol (Streamable HTTP, stateless) with the \
same bearer credential; the tools follow it (a mailbox key: list_messages, \
search_messages, get_message, list_threads, get_thread, get_attachment, \
wait_for_message, and with mailbox.send reply_to_message, forward_message, \
send_message; a sending key: send_email, get_email); refusals are tool results with \
isError and the error body.\n";

/// The guide for `doc`.
pub fn render(doc: &OpenApi) -> String {
    let mut out = String::from(HEAD);
    let mut by_tag: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (path, item) in &doc.paths.paths {
        let ops: [(&str, &Option<Operation>); 5] = [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("PATCH", &item.patch),
            ("DELETE", &item.delete),
        ];
        for (method, op) in ops {
            let Some(op) = op else { continue };
            let tag = op.tags.as_ref().and_then(|t| t.first()).cloned().unwrap_or_else(|| "other".into());
            let mut line = format!("- {method} {path}");
            let summary = op.summary.as_deref().or(op.description.as_deref()).unwrap_or("");
            if !summary.is_empty() {
                line.push_str(": ");
                line.push_str(summary.lines().next().unwrap_or(""));
            }
            let query: Vec<String> = op
                .parameters
                .iter()
                .flatten()
                .filter(|p| matches!(p.parameter_in, ParameterIn::Query))
                .map(|p| p.name.clone())
                .collect();
            if !query.is_empty() {
                line.push_str(&format!(" (query: {})", query.join(", ")));
            }
            if let Some(RefOr::T(body)) = op.request_body.as_ref().map(|b| RefOr::T(b.clone())) {
                let types: Vec<&String> = body.content.keys().collect();
                if !types.is_empty() {
                    line.push_str(&format!(
                        " [body: {}]",
                        types.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    ));
                }
            }
            let statuses: Vec<&String> = op.responses.responses.keys().filter(|s| s.starts_with('2')).collect();
            if !statuses.is_empty() {
                line.push_str(&format!(" → {}", statuses.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")));
            }
            by_tag.entry(tag).or_default().push(line);
        }
    }
    for (tag, lines) in by_tag {
        out.push_str(&format!("\n## {tag}\n\n"));
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}
