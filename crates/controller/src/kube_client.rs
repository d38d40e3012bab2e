//! The Kubernetes client of `fledge run`: every request counted in `/metrics`, at most
//! `--kube-api-concurrency` in flight, and, when `--kube-api-qps` is set, a client-side rate
//! limit as client-go's (a token bucket of `--kube-api-burst` tokens refilled at the QPS).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use kube::Client;

use crate::metrics::Metrics;

/// A client-side rate limit: `qps` requests a second on average, `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Requests a second, on average (more than zero).
    pub qps: f64,
    /// Requests that may go at once after a quiet spell (at least one).
    pub burst: u32,
}

impl RateLimit {
    /// The token bucket of this limit.
    pub fn limiter(self) -> anyhow::Result<DefaultDirectRateLimiter> {
        if !(self.qps.is_finite() && self.qps > 0.0) {
            anyhow::bail!("the rate limit's QPS must be more than zero");
        }
        let period = Duration::from_secs_f64(1.0 / self.qps);
        let burst = NonZeroU32::new(self.burst)
            .ok_or_else(|| anyhow::anyhow!("the rate limit's burst must be at least 1"))?;
        let quota = Quota::with_period(period)
            .ok_or_else(|| anyhow::anyhow!("the rate limit's QPS is too high"))?
            .allow_burst(burst);
        Ok(RateLimiter::direct(quota))
    }
}

/// Builds the client from `config`.
pub fn build(
    config: kube::Config,
    user_agent: &str,
    metrics: Arc<Metrics>,
    concurrency: u16,
    rate_limit: Option<RateLimit>,
) -> anyhow::Result<Client> {
    use anyhow::Context as _;
    let agent = hyper::header::HeaderValue::from_str(user_agent)
        .with_context(|| format!("{user_agent:?} is not a valid user agent"))?;
    let builder = kube::client::ClientBuilder::try_from(config)
        .context("cannot build a Kubernetes client")?
        .with_layer(&tower::util::MapRequestLayer::new(
            move |mut req: hyper::Request<kube::client::Body>| {
                metrics.kube_request(req.method().as_str());
                req.headers_mut()
                    .insert(hyper::header::USER_AGENT, agent.clone());
                req
            },
        ))
        .with_layer(&tower::limit::ConcurrencyLimitLayer::new(usize::from(
            concurrency.max(1),
        )));
    let Some(limit) = rate_limit else {
        return Ok(builder.build());
    };
    let limiter = Arc::new(limit.limiter()?);
    // The filter runs before the request takes a place among those in flight; the buffer lets
    // it hand the request on from its own future.
    Ok(builder
        .with_layer(&tower::buffer::BufferLayer::new(1024))
        .with_layer(&tower::filter::AsyncFilterLayer::new(
            move |req: hyper::Request<kube::client::Body>| {
                let limiter = limiter.clone();
                async move {
                    limiter.until_ready().await;
                    Ok::<_, tower::BoxError>(req)
                }
            },
        ))
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_at_once_and_the_rest_waits_for_the_rate() {
        let limiter = RateLimit { qps: 2.0, burst: 3 }.limiter().unwrap();
        for _ in 0..3 {
            assert!(limiter.check().is_ok());
        }
        assert!(limiter.check().is_err(), "the fourth waits for a token");
    }

    #[test]
    fn a_limit_without_rate_or_burst_is_refused() {
        assert!(RateLimit { qps: 0.0, burst: 1 }.limiter().is_err());
        assert!(
            RateLimit {
                qps: f64::NAN,
                burst: 1
            }
            .limiter()
            .is_err()
        );
        assert!(RateLimit { qps: 5.0, burst: 0 }.limiter().is_err());
    }
}
