// A Node.js consumer that knows nothing but proto/: loads the contract at run time with
// @grpc/proto-loader and streams a reply. Prints one JSON line per event, then "DONE".
// Usage: node consumer.js <target> <token> <model>
//          [--ca ca.pem [--cert client.pem --key client-key.pem] [--server-name NAME]]
//          [--tool]
// Plaintext by default; --ca connects over TLS trusting that CA, --cert/--key add the
// client certificate a gateway with mutual TLS asks for, --server-name is the name the
// gateway's certificate carries when it is not the target's host. --tool declares a
// get_weather tool the model must call, assembles the streamed ToolCallDelta pieces and
// prints "TOOL_CALL <id> <name> <arguments>" for each call before "DONE".
const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [target, token, model, ...flags] = process.argv.slice(2);
const tls = {};
const withTool = flags.includes("--tool");
const tlsFlags = flags.filter((flag) => flag !== "--tool");
for (let i = 0; i < tlsFlags.length; i += 2) {
  const [flag, value] = [tlsFlags[i], tlsFlags[i + 1]];
  if (!["--ca", "--cert", "--key", "--server-name"].includes(flag) || value === undefined) {
    console.error(`usage: unknown or incomplete option ${flag}`);
    process.exit(2);
  }
  tls[flag.slice(2)] = value;
}
if (("cert" in tls) !== ("key" in tls)) {
  console.error("usage: --cert and --key go together");
  process.exit(2);
}

// Any TLS option means TLS; without --ca the system roots verify the gateway.
function credentials() {
  if (Object.keys(tls).length === 0) return grpc.credentials.createInsecure();
  const read = (name) => (name in tls ? fs.readFileSync(tls[name]) : null);
  return grpc.credentials.createSsl(read("ca"), read("key"), read("cert"));
}

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
const options = "server-name" in tls ? { "grpc.ssl_target_name_override": tls["server-name"] } : {};
const client = new v1.GenerationService(target, credentials(), options);
const metadata = new grpc.Metadata();
metadata.add("authorization", `Bearer ${token}`);

const request = { model, messages: [{ role: "user", content: "Hello from Node" }] };
if (withTool) {
  // google.protobuf.Struct as proto-loader spells it: fields of Values. The well-known
  // types come from protobufjs's bundled definitions, whose field names are camelCase
  // (stringValue, structValue, listValue) even with keepCase.
  const str = (s) => ({ stringValue: s });
  request.messages[0].content = "What is the weather in Paris?";
  request.tools = [{
    name: "get_weather",
    description: "Current weather in a city",
    parameters: { fields: {
      type: str("object"),
      properties: { structValue: { fields: {
        city: { structValue: { fields: { type: str("string") } } },
      } } },
      required: { listValue: { values: [str("city")] } },
    } },
  }];
  request.tool_choice = { mode: "TOOL_CHOICE_MODE_REQUIRED" };
}
const call = client.StreamGenerate(request, metadata, { deadline: Date.now() + 10000 });
const calls = new Map(); // index → {id, name, arguments}
call.on("data", (event) => {
  console.log(JSON.stringify(event));
  if (event.tool_call) {
    const piece = event.tool_call;
    const index = piece.index || 0;
    const assembled = calls.get(index) || { id: piece.id, name: piece.name, arguments: "" };
    assembled.arguments += piece.arguments_delta || "";
    calls.set(index, assembled);
  }
});
call.on("error", (err) => {
  console.error(`ERROR ${err.code} ${err.details}`);
  process.exit(1);
});
call.on("end", () => {
  for (const [, c] of [...calls.entries()].sort((a, b) => a[0] - b[0])) {
    console.log(`TOOL_CALL ${c.id} ${c.name} ${c.arguments}`);
  }
  console.log("DONE");
  client.close();
});
