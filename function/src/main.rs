//! `bootstrap`: the weather function's Lambda runtime entry point. Wires settings and
//! the handler into `lambda_http`; invalid settings fail the init visibly. On Managed
//! Instances (`AWS_LAMBDA_MAX_CONCURRENCY`) it serves that many invokes at once.

use std::convert::Infallible;
use std::sync::Arc;

use lambda_http::{service_fn, Error, Request};
use weather::config::Settings;
use weather::handler::{handle, App};

#[tokio::main]
async fn main() -> Result<(), Error> {
    weather::logging::init();
    let settings = Settings::from_env(|k| std::env::var(k).ok())?;
    let app = Arc::new(App::new(settings)?);
    lambda_http::run_concurrent(service_fn(move |req: Request| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(handle(&app, req).await) }
    }))
    .await
}
