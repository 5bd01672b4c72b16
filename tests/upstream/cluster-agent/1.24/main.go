package main

import "github.com/canonical/microk8s-cluster-agent/cmd"

func main() {
	cmd.Execute()
}
