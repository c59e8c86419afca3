//! The store's metrics on a Prometheus endpoint: ticketlock records
//! through the `metrics` facade (the `metrics` feature), and the
//! application installs the exporter.
//!
//! ```text
//! cargo run --example prometheus --features metrics
//! curl localhost:9000/metrics
//! ```

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusBuilder;
use ticketlock::LockStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The application's choice of exporter; until it installs one,
    // nothing is recorded.
    let prometheus = PrometheusBuilder::new().install_recorder()?;

    // Some traffic: four tasks taking turns on two conversations.
    let store = LockStore::in_memory();
    for i in 0..4 {
        let store = store.clone();
        tokio::spawn(async move {
            let id = if i % 2 == 0 { "alice" } else { "bob" };
            loop {
                match store.lock(id).await {
                    Ok(guard) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        let _ = guard.release().await;
                    }
                    Err(e) => eprintln!("{e}"),
                }
            }
        });
    }

    let app = Router::new().route(
        "/metrics",
        get(move || std::future::ready(prometheus.render())),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:9000").await?;
    println!("metrics on http://127.0.0.1:9000/metrics");
    axum::serve(listener, app).await?;
    Ok(())
}
