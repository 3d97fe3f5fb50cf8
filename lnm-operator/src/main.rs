//! `lnm-operator`: renders an `Lnm` custom resource into Kubernetes objects, prints the CRD, or
//! runs the operator.
//!
//! ```sh
//! lnm-operator render --config level4.yaml [--image IMG] [--namespace NS] [--service-address IP]
//! lnm-operator crd                      # the CustomResourceDefinition
//! lnm-operator run [--install-crd]      # the operator (in-cluster or ~/.kube/config)
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use lnm_operator::{Level, RenderOptions, ServiceType, TrafficPolicy, render};

/// Runs lnm on Kubernetes from Azure IoT LNM's `Lnm` custom resource.
#[derive(Debug, Parser)]
#[command(name = "lnm-operator", version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the Kubernetes objects of one level as a YAML stream (apply with `kubectl apply -f -`).
    Render {
        /// The `Lnm` custom resource (or its spec, with --name), YAML or JSON.
        #[arg(long, short)]
        config: PathBuf,
        /// The level's name (default: the CR's metadata.name).
        #[arg(long)]
        name: Option<String>,
        /// The namespace (default: the CR's, else `default`).
        #[arg(long)]
        namespace: Option<String>,
        /// The gateway image.
        #[arg(long)]
        image: Option<String>,
        /// imagePullPolicy.
        #[arg(long)]
        image_pull_policy: Option<String>,
        /// The Service type.
        #[arg(long, value_enum, default_value_t = ServiceTypeArg::LoadBalancer)]
        service_type: ServiceTypeArg,
        /// The Service's externalTrafficPolicy.
        #[arg(long, value_enum, default_value_t = TrafficPolicyArg::Local)]
        external_traffic_policy: TrafficPolicyArg,
        /// This level's Service address as the level below reaches it (fills the client-config).
        #[arg(long)]
        service_address: Option<IpAddr>,
        /// Where the child level's standalone Corefile forwards other names (`ip:port`, repeatable).
        #[arg(long)]
        child_upstream: Vec<SocketAddr>,
        /// Container port of the TLS listener (the Service's 443).
        #[arg(long)]
        tls_port: Option<u16>,
        /// Container port of the HTTP listener (the Service's 80).
        #[arg(long)]
        http_port: Option<u16>,
        /// Container port of the DNS server (the Service's 53).
        #[arg(long)]
        dns_port: Option<u16>,
        /// Container port of the admin endpoint (never on the Service).
        #[arg(long)]
        admin_port: Option<u16>,
    },
    /// Print the `Lnm` CustomResourceDefinition.
    Crd,
    /// Run the operator until SIGTERM/SIGINT.
    Run {
        /// Server-side-apply the CRD at start (needs RBAC on customresourcedefinitions).
        #[arg(long)]
        install_crd: bool,
        /// Watch one namespace only (default: all).
        #[arg(long)]
        namespace: Option<String>,
        /// The gateway image of every level.
        #[arg(long)]
        image: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ServiceTypeArg {
    #[value(name = "LoadBalancer")]
    LoadBalancer,
    #[value(name = "NodePort")]
    NodePort,
    #[value(name = "ClusterIP")]
    ClusterIp,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TrafficPolicyArg {
    #[value(name = "Local")]
    Local,
    #[value(name = "Cluster")]
    Cluster,
}

#[allow(clippy::print_stdout)]
fn main() -> ExitCode {
    match Args::parse().command {
        Command::Render {
            config,
            name,
            namespace,
            image,
            image_pull_policy,
            service_type,
            external_traffic_policy,
            service_address,
            child_upstream,
            tls_port,
            http_port,
            dns_port,
            admin_port,
        } => {
            let text = match std::fs::read_to_string(&config) {
                Ok(text) => text,
                Err(e) => {
                    eprintln!("lnm-operator: cannot read {}: {e}", config.display());
                    return ExitCode::from(2);
                }
            };
            let mut options = RenderOptions::default()
                .with_service_type(match service_type {
                    ServiceTypeArg::LoadBalancer => ServiceType::LoadBalancer,
                    ServiceTypeArg::NodePort => ServiceType::NodePort,
                    ServiceTypeArg::ClusterIp => ServiceType::ClusterIP,
                })
                .with_external_traffic_policy(match external_traffic_policy {
                    TrafficPolicyArg::Local => TrafficPolicy::Local,
                    TrafficPolicyArg::Cluster => TrafficPolicy::Cluster,
                })
                .with_child_upstream(child_upstream);
            options.name = name;
            options.namespace = namespace;
            options.service_address = service_address;
            if let Some(image) = image {
                options.image = image;
            }
            if let Some(policy) = image_pull_policy {
                options.image_pull_policy = policy;
            }
            options.tls_port = tls_port.unwrap_or(options.tls_port);
            options.http_port = http_port.unwrap_or(options.http_port);
            options.dns_port = dns_port.unwrap_or(options.dns_port);
            options.admin_port = admin_port.unwrap_or(options.admin_port);
            let source = config.display().to_string();
            let rendered = Level::parse(&text, &source)
                .and_then(|level| render(&level, &options))
                .and_then(|r| Ok((r.to_yaml()?, r.warnings, r.notes)));
            match rendered {
                Ok((yaml, warnings, notes)) => {
                    for warning in warnings {
                        eprintln!("lnm-operator: warning: {source}: {warning}");
                    }
                    for note in notes {
                        eprintln!("lnm-operator: note: {source}: {note}");
                    }
                    print!("{yaml}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("lnm-operator: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Crd => {
            print!("{}", lnm_operator::CRD_YAML);
            ExitCode::SUCCESS
        }
        Command::Run {
            install_crd,
            namespace,
            image,
        } => run(install_crd, namespace, image),
    }
}

fn run(install_crd: bool, namespace: Option<String>, image: Option<String>) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("lnm-operator: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let client = match kube::Client::try_default().await {
            Ok(client) => client,
            Err(e) => {
                tracing::error!("no Kubernetes API server (in-cluster or ~/.kube/config): {e}");
                return ExitCode::FAILURE;
            }
        };
        if install_crd {
            if let Err(e) = lnm_operator::reconcile::install_crd(&client).await {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
            tracing::info!("CustomResourceDefinition applied");
        }
        let mut options = RenderOptions::default();
        if let Some(image) = image {
            options.image = image;
        }
        tracing::info!(namespace = namespace.as_deref().unwrap_or("(all)"), image = %options.image, "watching Lnm resources");
        lnm_operator::reconcile::run(client, options, namespace.as_deref()).await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}
