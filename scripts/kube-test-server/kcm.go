package main

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"
	utilcompatibility "k8s.io/apiserver/pkg/util/compatibility"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/component-base/compatibility"
	kcm "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
	"k8s.io/kubernetes/cmd/kube-controller-manager/names"
)

// controllers are the kube-controller-manager controllers a cluster without nodes still needs
// for what vmdhcp relies on: namespaces that delete their contents, owner references that
// delete dependents, Pods that pass ServiceAccount admission, and the RBAC roles and CA ConfigMap
// every namespace has.
var controllers = []string{
	names.NamespaceController,
	names.GarbageCollectorController,
	names.ServiceAccountController,
	names.RootCACertificatePublisherController,
	names.ClusterRoleAggregationController,
}

// startControllerManager runs kube-controller-manager's own Run with only those controllers, each
// with its own ServiceAccount credentials as in a cluster; the returned channel yields when it
// stops.
func startControllerManager(ctx context.Context, kubeconfig, rootCA string) (<-chan error, error) {
	s, err := options.NewKubeControllerManagerOptions()
	if err != nil {
		return nil, err
	}
	featureGate := utilfeature.DefaultMutableFeatureGate.DeepCopy()
	registry := compatibility.NewComponentGlobalsRegistry()
	effective := utilcompatibility.DefaultKubeEffectiveVersionForTest()
	effective.SetEmulationVersion(featureGate.EmulationVersion())
	effective.SetMinCompatibilityVersion(featureGate.MinCompatibilityVersion())
	if err := registry.Register(compatibility.DefaultKubeComponent, effective, featureGate); err != nil {
		return nil, err
	}
	s.ComponentGlobalsRegistry = registry

	all, disabled, aliases := kcm.KnownControllers(), kcm.ControllersDisabledByDefault(), kcm.ControllerAliases()
	named := s.Flags(all, disabled, aliases)
	fs := pflag.NewFlagSet("kube-controller-manager", pflag.ContinueOnError)
	for _, f := range named.FlagSets {
		fs.AddFlagSet(f)
	}
	flags := []string{
		"--kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--use-service-account-credentials=true",
		"--root-ca-file=" + rootCA,
	}
	for _, c := range controllers {
		flags = append(flags, "--controllers="+c)
	}
	if err := fs.Parse(flags); err != nil {
		return nil, fmt.Errorf("kube-controller-manager flags: %w", err)
	}
	s.ParsedFlags = &named
	if err := s.ComponentGlobalsRegistry.Set(); err != nil {
		return nil, err
	}
	config, err := s.Config(ctx, all, disabled, aliases)
	if err != nil {
		return nil, fmt.Errorf("kube-controller-manager config: %w", err)
	}
	done := make(chan error, 1)
	go func() {
		done <- kcm.Run(ctx, config.Complete())
	}()
	return done, nil
}
