package main

import "os"

// ingressURL reads AIRLOCK_INGRESS_URL: the base URL of the upload ingress
// (template parameter UploadIngress; README, Upload ingress), "" without
// one. registry.New checks its form.
func ingressURL() string { return os.Getenv("AIRLOCK_INGRESS_URL") }
