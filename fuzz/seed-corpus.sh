#!/usr/bin/env bash
# Seeds fuzz/corpus/{parse,engine} from the scenarios: their text for the parser, and the same
# bytes as entropy for the engine target (whose input steers the program generator).
set -euo pipefail
cd "$(dirname "$0")"
for t in parse engine; do
    mkdir -p "corpus/$t"
    find ../scenarios -name '*.thps' | while read -r f; do
        cp "$f" "corpus/$t/seed-$(echo "${f#../scenarios/}" | tr '/' '_')"
    done
done
echo "corpus: $(ls corpus/parse | wc -l) seeds per target"
