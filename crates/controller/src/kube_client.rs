//! The Kubernetes client of `fledge run`: every request counted in `/metrics`, at most
//! `--kube-api-concurrency` in flight, and, when `--kube-api-qps` is set, a client-side rate
//! limit as client-go's (a token bucket of `--kube-api-burst` tokens refilled at the QPS).
//!
//! The requests in flight are shared by two lanes: a quarter of them (at least one) is kept for
//! the urgent requests (those a reconcile makes while it runs in [`in_lane`] with
//! [`Lane::Urgent`]: a rollback's writes), the rest is for all the others. When a thousand
//! rollouts fail within seconds, a rollback's status write would otherwise queue behind the
//! routine writes of the analysis steps around it.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use kube::Client;
use tokio::sync::Semaphore;
use tower::{Layer, Service};

/// Which share of the requests in flight a request waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Most requests: analysis steps, Events, reads.
    Routine,
    /// Requests that take traffic off a failing revision.
    Urgent,
}

tokio::task_local! {
    /// The lane of the requests made by the future running in [`in_lane`].
    static LANE: Lane;
}

/// Runs `fut` with the requests it makes (on its own task, not on tasks it spawns) in `lane`.
pub async fn in_lane<F: Future>(lane: Lane, fut: F) -> F::Output {
    LANE.scope(lane, fut).await
}

/// The lane of the requests made here: [`Lane::Routine`] outside [`in_lane`].
fn current_lane() -> Lane {
    LANE.try_with(|lane| *lane).unwrap_or(Lane::Routine)
}

/// How `concurrency` requests in flight are shared: (routine, urgent). The urgent lane has a
/// quarter (at least one); the routine lane the rest (at least one).
fn lane_sizes(concurrency: u16) -> (usize, usize) {
    let total = usize::from(concurrency.max(1));
    let urgent = (total / 4).max(1);
    ((total - urgent).max(1), urgent)
}

/// A layer that lets a request go once its lane has room.
#[derive(Clone)]
struct LanesLayer {
    routine: Arc<Semaphore>,
    urgent: Arc<Semaphore>,
}

impl LanesLayer {
    fn new(concurrency: u16) -> Self {
        let (routine, urgent) = lane_sizes(concurrency);
        LanesLayer {
            routine: Arc::new(Semaphore::new(routine)),
            urgent: Arc::new(Semaphore::new(urgent)),
        }
    }
}

impl<S> Layer<S> for LanesLayer {
    type Service = Lanes<S>;

    fn layer(&self, inner: S) -> Lanes<S> {
        Lanes {
            inner: Arc::new(Mutex::new(inner)),
            lanes: self.clone(),
        }
    }
}

/// The service of [`LanesLayer`]. It is always ready: the wait for a place is in the response
/// future, which the caller's task polls (kube's client hands `call` to a worker task of its
/// own, so the caller's lane is read there and not in `call`). A place is held until the
/// response starts, as tower's concurrency limit holds it. The inner service (kube's, which
/// cannot be cloned) is shared behind a lock held only to call it, never across an await.
struct Lanes<S> {
    inner: Arc<Mutex<S>>,
    lanes: LanesLayer,
}

impl<S> Clone for Lanes<S> {
    fn clone(&self) -> Self {
        Lanes {
            inner: self.inner.clone(),
            lanes: self.lanes.clone(),
        }
    }
}

impl<S, R> Service<R> for Lanes<S>
where
    S: Service<R> + Send + 'static,
    S::Future: Send,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> Self::Future {
        let inner = self.inner.clone();
        let lanes = self.lanes.clone();
        Box::pin(async move {
            let lane = match current_lane() {
                Lane::Routine => lanes.routine,
                Lane::Urgent => lanes.urgent,
            };
            // The semaphores are never closed: a place is always given in the end.
            let _place = lane.acquire_owned().await.ok();
            let mut req = Some(req);
            let response = std::future::poll_fn(|cx| {
                let mut svc = inner.lock().unwrap_or_else(PoisonError::into_inner);
                match svc.poll_ready(cx) {
                    Poll::Ready(Ok(())) => match req.take() {
                        Some(req) => Poll::Ready(Ok(svc.call(req))),
                        None => Poll::Pending,
                    },
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await?;
            response.await
        })
    }
}

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
        .with_layer(&LanesLayer::new(concurrency));
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
    use tower::ServiceExt;

    #[test]
    fn a_quarter_of_the_requests_in_flight_is_kept_for_urgent_ones() {
        assert_eq!(lane_sizes(64), (48, 16));
        assert_eq!(lane_sizes(5), (4, 1));
        assert_eq!(lane_sizes(2), (1, 1));
        assert_eq!(lane_sizes(1), (1, 1));
    }

    /// A service that holds every request until it is let go, counting those it holds.
    #[derive(Clone)]
    struct Held {
        gate: Arc<Semaphore>,
        held: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Service<&'static str> for Held {
        type Response = &'static str;
        type Error = std::convert::Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<&'static str, Self::Error>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: &'static str) -> Self::Future {
            let (gate, held) = (self.gate.clone(), self.held.clone());
            Box::pin(async move {
                held.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = gate.acquire().await.map(|p| p.forget());
                Ok(req)
            })
        }
    }

    #[tokio::test]
    async fn an_urgent_request_passes_routine_ones_that_fill_their_lane() {
        let gate = Arc::new(Semaphore::new(0));
        let held = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let svc = LanesLayer::new(4).layer(Held {
            gate: gate.clone(),
            held: held.clone(),
        });
        // Four routine requests: three take the routine lane, the fourth waits.
        let routine: Vec<_> = (0..4)
            .map(|_| tokio::spawn(svc.clone().oneshot("routine")))
            .collect();
        while held.load(std::sync::atomic::Ordering::SeqCst) < 3 {
            tokio::task::yield_now().await;
        }
        // An urgent one reaches the service although the routine lane is full.
        let urgent = tokio::spawn(in_lane(Lane::Urgent, svc.clone().oneshot("urgent")));
        while held.load(std::sync::atomic::Ordering::SeqCst) < 4 {
            tokio::task::yield_now().await;
        }
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            held.load(std::sync::atomic::Ordering::SeqCst),
            4,
            "the fourth routine request waits for its lane"
        );
        gate.add_permits(5);
        assert_eq!(urgent.await.unwrap(), Ok("urgent"));
        for r in routine {
            assert_eq!(r.await.unwrap(), Ok("routine"));
        }
        assert_eq!(held.load(std::sync::atomic::Ordering::SeqCst), 5);
    }

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
