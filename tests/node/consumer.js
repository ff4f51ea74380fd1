// A Node.js consumer that knows nothing but proto/: loads the contract at run time with
// @grpc/proto-loader and streams a reply. Prints one JSON line per event, then "DONE".
// Usage: node consumer.js <target> <token> <model>
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [target, token, model] = process.argv.slice(2);
const protoRoot = path.resolve(__dirname, "..", "..", "proto");
const definition = protoLoader.loadSync("llmgateway/v1/generation.proto", {
  includeDirs: [protoRoot],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
  oneofs: true,
});
const v1 = grpc.loadPackageDefinition(definition).llmgateway.v1;
const client = new v1.GenerationService(target, grpc.credentials.createInsecure());
const metadata = new grpc.Metadata();
metadata.add("authorization", `Bearer ${token}`);

const call = client.StreamGenerate(
  { model, messages: [{ role: "user", content: "Hello from Node" }] },
  metadata,
  { deadline: Date.now() + 10000 },
);
call.on("data", (event) => console.log(JSON.stringify(event)));
call.on("error", (err) => {
  console.error(`ERROR ${err.code} ${err.details}`);
  process.exit(1);
});
call.on("end", () => {
  console.log("DONE");
  client.close();
});
