//! VirtualMachine reconciler: keeps each VM's vmnetcfg in step with its Multus NICs.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use vmdhcp_api::vmnetcfg::VirtualMachineNetworkConfig;

use crate::context::Context;
use crate::error::{Error, is_status};
use crate::kubevirt::{VirtualMachine, VmAction, desired_network_configs, vm_action};
use crate::metrics::Kind;

/// Reconciles one VM.
///
/// # Errors
/// API errors; the controller requeues.
pub async fn reconcile(vm: Arc<VirtualMachine>, ctx: Arc<Context>) -> Result<Action, Error> {
    let metrics = ctx.metrics.clone();
    super::measured(Kind::Vm, &metrics, sync(vm, ctx)).await
}

async fn sync(vm: Arc<VirtualMachine>, ctx: Arc<Context>) -> Result<Action, Error> {
    if vm.metadata.deletion_timestamp.is_some() {
        // The vmnetcfg is owned by the VM: the garbage collector deletes it.
        return Ok(Action::await_change());
    }
    // The vmnetcfgs are read from the cache: until it has listed them all, a missing one may
    // only not be listed yet (a restart over thousands of VMs would try to create each).
    if !ctx.synced.load(std::sync::atomic::Ordering::Acquire) {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let ns = vm.namespace().unwrap_or_default();
    let name = vm.name_any();
    let desired = match desired_network_configs(&vm) {
        Ok(d) => d,
        Err(message) => {
            // Upstream logs and gives up until the VM changes; so do we, visibly.
            tracing::error!("{message}");
            ctx.event(
                vm.as_ref(),
                EventType::Warning,
                "InvalidAnnotation",
                "Sync",
                message,
            )
            .await;
            return Ok(Action::await_change());
        }
    };
    for warning in &desired.warnings {
        tracing::warn!("{warning}");
        ctx.event(
            vm.as_ref(),
            EventType::Warning,
            "InvalidAnnotation",
            "Sync",
            warning.clone(),
        )
        .await;
    }
    let api: Api<VirtualMachineNetworkConfig> = Api::namespaced(ctx.client.clone(), &ns);
    // From the cache: one that lags behind makes a create or an update conflict, and the
    // conflict looks again a moment later.
    let existing = ctx
        .vmnetcfgs
        .get(&ObjectRef::new(&name).within(&ns))
        .map(|cfg| cfg.as_ref().clone());
    match vm_action(&vm, desired.network_configs, existing.as_ref()) {
        VmAction::Skip(reason) => {
            tracing::debug!("{reason}");
            Ok(Action::await_change())
        }
        VmAction::InSync => Ok(Action::await_change()),
        VmAction::Create(cfg) => match api.create(&PostParams::default(), &cfg).await {
            Ok(_) => {
                tracing::info!(vm = %format!("{ns}/{name}"), "vmnetcfg created");
                Ok(Action::await_change())
            }
            Err(e) if is_status(&e, 409) => Ok(Action::requeue(Duration::from_secs(1))),
            Err(e) => Err(Error::kube(format!("create vmnetcfg {ns}/{name}"), e)),
        },
        VmAction::UpdateSpec(nics) => {
            let mut cfg = existing.unwrap_or_default();
            cfg.spec.network_configs = nics;
            match api.replace(&name, &PostParams::default(), &cfg).await {
                Ok(_) => Ok(Action::await_change()),
                Err(e) if is_status(&e, 409) => Ok(Action::requeue(Duration::from_secs(1))),
                Err(kube::Error::Api(status))
                    if (400..500).contains(&status.code) && status.code != 409 =>
                {
                    // Refused (by the webhook, typically): say so on the VM; the VM must change.
                    let note = format!("vmnetcfg {ns}/{name} not updated: {}", status.message);
                    tracing::warn!("{note}");
                    ctx.event(
                        vm.as_ref(),
                        EventType::Warning,
                        "NetworkConfigRejected",
                        "Sync",
                        note,
                    )
                    .await;
                    Ok(Action::await_change())
                }
                Err(e) => Err(Error::kube(format!("update vmnetcfg {ns}/{name}"), e)),
            }
        }
    }
}
