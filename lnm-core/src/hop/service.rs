//! Hops as tower services, and tower services as hops.
//!
//! [`HopService`] lets tower middleware wrap a hop (`tower::timeout`, `retry`,
//! `limit::ConcurrencyLimit`, a failover `steer`, lnm-policy's `EnforceLayer`...); [`TowerHop`]
//! turns any tower connector service — including such a wrapped hop — back into a [`Hop`] the
//! proxy can use. The request a [`TowerHop`] sends is any [`HopRequest`]: a [`Target`], a
//! `(Target, ConnInfo)` pair, or a type of the application's.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use tower::{Service, ServiceExt};

use crate::{BoxError, ConnInfo, Denied, Error, Hop, Stream, Target};

/// A [`Hop`] as a `tower::Service<Target>` (with default [`ConnInfo`]) and
/// `tower::Service<(Target, ConnInfo)>`. Always ready; cloning shares the hop.
///
/// ```
/// use std::time::Duration;
/// use lnm_core::hop::{HopService, Parent, TowerHop};
/// use tower::ServiceBuilder;
///
/// // A parent hop with a tower timeout around it, used as a hop again.
/// let parent = Parent::new(["10.4.0.1:443".parse().unwrap()]);
/// let svc = ServiceBuilder::new()
///     .timeout(Duration::from_secs(3))
///     .service(HopService::new(parent));
/// let hop = TowerHop::new(svc);
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

/// A request type a [`TowerHop`] can build from a target and its connection metadata.
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
/// [`Error`] is passed through as is (so a wrapped hop's errors stay precise), a [`Denied`]
/// (from a policy layer around the hop) becomes [`Error::Denied`] — which the proxy reports as
/// a denial —, and any other error, such as tower's `Elapsed`, becomes [`Error::Service`].
pub struct TowerHop<S, Req = Target> {
    service: S,
    _request: PhantomData<fn(Req)>,
}

impl<S> TowerHop<S, Target> {
    /// Wraps a `Service<Target>`.
    pub fn new(service: S) -> Self {
        TowerHop {
            service,
            _request: PhantomData,
        }
    }
}

impl<S> TowerHop<S, (Target, ConnInfo)> {
    /// Wraps a `Service<(Target, ConnInfo)>`, which also sees the connection's metadata.
    pub fn with_info(service: S) -> Self {
        TowerHop {
            service,
            _request: PhantomData,
        }
    }
}

impl<S, Req: HopRequest> TowerHop<S, Req> {
    /// Wraps a `Service<Req>` for any request type the application defines (name it with a
    /// turbofish: `TowerHop::<_, MyRequest>::for_requests(service)`).
    pub fn for_requests(service: S) -> Self {
        TowerHop {
            service,
            _request: PhantomData,
        }
    }
}

impl<S: Clone, Req> Clone for TowerHop<S, Req> {
    fn clone(&self) -> Self {
        TowerHop {
            service: self.service.clone(),
            _request: PhantomData,
        }
    }
}

impl<S, Req> std::fmt::Debug for TowerHop<S, Req> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TowerHop")
    }
}

#[async_trait]
impl<S, Req> Hop for TowerHop<S, Req>
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
                let e = match e.downcast::<Error>() {
                    Ok(ours) => return Err(*ours),
                    Err(e) => e,
                };
                match e.downcast::<Denied>() {
                    Ok(denied) => Err(Error::Denied(*denied)),
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
        let hop = TowerHop::new(svc);
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
        let hop = TowerHop::with_info(svc);
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
    async fn a_denial_from_a_layer_is_a_denial() {
        let svc = tower::service_fn(|_: Target| async {
            Err::<Stream, BoxError>(Box::new(Denied::new(crate::Reason::Policy("test_rule"))))
        });
        let err = TowerHop::new(svc)
            .connect(
                &Target::new("x.example".parse().unwrap(), 443),
                &ConnInfo::default(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Denied(d) if d.reason == crate::Reason::Policy("test_rule")),
            "{err}"
        );
    }

    /// An application's own request type: the target's name only.
    struct NameOnly(String);

    impl HopRequest for NameOnly {
        fn from_parts(target: &Target, _info: &ConnInfo) -> Self {
            NameOnly(target.name.to_string())
        }
    }

    #[tokio::test]
    async fn a_service_of_the_applications_request_type_is_a_hop() {
        let net = MemoryNetwork::new();
        let mut listener = net.bind("named.example").unwrap();
        let dial_net = net.clone();
        let svc = tower::service_fn(move |r: NameOnly| {
            let net = dial_net.clone();
            async move { net.connect(&r.0, "127.0.0.1:1".parse().unwrap()).await }
        });
        let hop = TowerHop::<_, NameOnly>::for_requests(svc);
        hop.connect(
            &Target::new("named.example".parse().unwrap(), 443),
            &ConnInfo::default(),
        )
        .await
        .unwrap();
        assert!(listener.accept().await.is_some());
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
        let hop = TowerHop::new(svc);
        hop.connect(
            &Target::new("via.example".parse().unwrap(), 1),
            &ConnInfo::default(),
        )
        .await
        .unwrap();
        assert!(listener.accept().await.is_some());
    }
}
