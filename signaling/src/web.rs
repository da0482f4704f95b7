//! The web client (signaling/web/), built into the server: a browser opens
//! `https://HOST/join/kfq-wmzt-pxd` (or `/?room=...`) and joins the room like the desktop app.

use axum::http::header;
use axum::response::IntoResponse;

const INDEX: &str = include_str!("../web/index.html");
const SCRIPT: &str = include_str!("../web/confab.js");
const STYLE: &str = include_str!("../web/style.css");

fn page(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

pub(crate) async fn index() -> impl IntoResponse {
    page("text/html; charset=utf-8", INDEX)
}

pub(crate) async fn script() -> impl IntoResponse {
    page("text/javascript; charset=utf-8", SCRIPT)
}

pub(crate) async fn style() -> impl IntoResponse {
    page("text/css; charset=utf-8", STYLE)
}
