//! Hops as tower services, and tower services as hops.
//!
//! [`HopService`] lets tower middleware wrap a hop (`tower::timeout`, `retry`,
//! `limit::ConcurrencyLimit`, a failover `steer`...); [`ServiceHop`] turns any tower connector
//! service — including such a wrapped hop — back into a [`Hop`] the proxy can use.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use tower::{Service, ServiceExt};

use crate::{BoxError, ConnInfo, Error, Hop, Stream, Target};

/// A [`Hop`] as a `tower::Service<Target>` (with default [`ConnInfo`]) and
/// `tower::Service<(Target, ConnInfo)>`. Always ready; cloning shares the hop.
///
/// ```
/// use std::time::Duration;
/// use lnm_core::hop::{HopService, Parent, ServiceHop};
/// use tower::ServiceBuilder;
///
/// // A parent hop with a tower timeout around it, used as a hop again.
/// let parent = Parent::new(["10.4.0.1:443".parse().unwrap()]);
/// let svc = ServiceBuilder::new()
///     .timeout(Duration::from_secs(3))
///     .service(HopService::new(parent));
/// let hop = ServiceHop::new(svc);
/// # let _: &dyn lnm_core::Hop = &hop;
/// ```
pub struct HopService<H: ?Sized> {
    hop: Arc<H>,
}

impl<H: Hop> HopService<H> {
    /// Wraps `hop`.
    pub fn new(hop: H) -> Self {
        HopService { hop: Arc::new(hop) }
    }
}

impl<H: ?Sized> HopService<H> {
    /// Wraps a shared hop.
    pub fn from_arc(hop: Arc<H>) -> Self {
        HopService { hop }
    }
}

impl<H: ?Sized> Clone for HopService<H> {
    fn clone(&self) -> Self {
        HopService {
            hop: self.hop.clone(),
        }
    }
}

impl<H: ?Sized> std::fmt::Debug for HopService<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HopService")
    }
}

type ConnectFuture = Pin<Box<dyn Future<Output = Result<Stream, Error>> + Send + 'static>>;

impl<H: Hop + ?Sized> Service<(Target, ConnInfo)> for HopService<H> {
    type Response = Stream;
    type Error = Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (target, info): (Target, ConnInfo)) -> Self::Future {
        let hop = self.hop.clone();
        Box::pin(async move { hop.connect(&target, &info).await })
    }
}

impl<H: Hop + ?Sized> Service<Target> for HopService<H> {
    type Response = Stream;
    type Error = Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, target: Target) -> Self::Future {
        self.call((target, ConnInfo::default()))
    }
}

/// A request type a [`ServiceHop`] can build from a target and its connection metadata.
pub trait HopRequest: Send + 'static {
    /// Builds the request.
    fn from_parts(target: &Target, info: &ConnInfo) -> Self;
}

impl HopRequest for Target {
    fn from_parts(target: &Target, _info: &ConnInfo) -> Self {
        target.clone()
    }
}

impl HopRequest for (Target, ConnInfo) {
    fn from_parts(target: &Target, info: &ConnInfo) -> Self {
        (target.clone(), info.clone())
    }
}

/// Any tower connector service as a [`Hop`]: a `Service<Target>` or
/// `Service<(Target, ConnInfo)>` whose response converts into a [`Stream`].
///
/// Each connection clones the service and drives it with `oneshot` (so `poll_ready`
/// back-pressure, e.g. from a concurrency limit, is honoured). An error that is an
/// [`Error`] is passed through as is (so a wrapped hop's errors stay precise); any other error,
/// such as tower's `Elapsed`, becomes [`Error::Service`].
pub struct ServiceHop<S, Req = Target> {
    service: S,
    _request: PhantomData<fn(Req)>,
}

impl<S> ServiceHop<S, Target> {
    /// Wraps a `Service<Target>`.
    pub fn new(service: S) -> Self {
        ServiceHop {
            service,
            _request: PhantomData,
        }
    }
}

impl<S> ServiceHop<S, (Target, ConnInfo)> {
    /// Wraps a `Service<(Target, ConnInfo)>`, which also sees the connection's metadata.
    pub fn with_info(service: S) -> Self {
        ServiceHop {
            service,
            _request: PhantomData,
        }
    }
}

impl<S: Clone, Req> Clone for ServiceHop<S, Req> {
    fn clone(&self) -> Self {
        ServiceHop {
            service: self.service.clone(),
            _request: PhantomData,
        }
    }
}

impl<S, Req> std::fmt::Debug for ServiceHop<S, Req> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceHop")
    }
}

#[async_trait]
impl<S, Req> Hop for ServiceHop<S, Req>
where
    Req: HopRequest,
    S: Service<Req> + Clone + Send + Sync + 'static,
    S::Response: Into<Stream>,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    async fn connect(&self, target: &Target, info: &ConnInfo) -> Result<Stream, Error> {
        let request = Req::from_parts(target, info);
        match self.service.clone().oneshot(request).await {
            Ok(response) => Ok(response.into()),
            Err(e) => {
                let e: BoxError = e.into();
                match e.downcast::<Error>() {
                    Ok(ours) => Err(*ours),
                    Err(other) => Err(Error::Service(other)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::hop::{Memory, MemoryNetwork};

    /// A hop that never answers.
    struct Stuck;

    #[async_trait]
    impl Hop for Stuck {
        async fn connect(&self, _: &Target, _: &ConnInfo) -> Result<Stream, Error> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn tower_timeout_wraps_a_hop() {
        let svc = tower::ServiceBuilder::new()
            .timeout(Duration::from_millis(20))
            .service(HopService::new(Stuck));
        let hop = ServiceHop::new(svc);
        let err = hop
            .connect(
                &Target::new("x.example".parse().unwrap(), 443),
                &ConnInfo::default(),
            )
            .await
            .unwrap_err();
        match err {
            Error::Service(inner) => assert!(inner.is::<tower::timeout::error::Elapsed>()),
            other => panic!("unexpected {other}"),
        }
    }

    #[tokio::test]
    async fn hop_errors_pass_through_unchanged() {
        let net = MemoryNetwork::new();
        let svc = tower::ServiceBuilder::new()
            .timeout(Duration::from_secs(1))
            .service(HopService::new(Memory::to(&net, "nowhere")));
        let hop = ServiceHop::with_info(svc);
        let err = hop
            .connect(
                &Target::new("x.example".parse().unwrap(), 443),
                &ConnInfo::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::MemoryUnreachable { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_closure_service_is_a_hop() {
        let net = MemoryNetwork::new();
        let mut listener = net.bind("origin").unwrap();
        let dial_net = net.clone();
        let svc = tower::service_fn(move |t: Target| {
            let net = dial_net.clone();
            async move {
                assert_eq!(t.name.as_str(), "via.example");
                net.connect("origin", "127.0.0.1:1".parse().unwrap()).await
            }
        });
        let hop = ServiceHop::new(svc);
        hop.connect(
            &Target::new("via.example".parse().unwrap(), 1),
            &ConnInfo::default(),
        )
        .await
        .unwrap();
        assert!(listener.accept().await.is_some());
    }
}
