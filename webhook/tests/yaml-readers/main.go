// yamltojson prints each document of a YAML stream as one line of JSON, converted exactly as
// kubectl converts manifests (sigs.k8s.io/yaml, a go-yaml v2 fork: YAML 1.1 scalars). Used by
// check.py to compare `deputy-webhook inject`'s reading and writing with kubectl's.
package main

import (
	"bytes"
	"fmt"
	"os"

	"sigs.k8s.io/yaml"
)

func main() {
	data, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// Our fixtures separate documents with a `---` line.
	for _, doc := range bytes.Split(append([]byte("\n"), data...), []byte("\n---\n")) {
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			fmt.Printf("ERROR %v\n", err)
			continue
		}
		if string(j) != "null" {
			fmt.Println(string(j))
		}
	}
}
