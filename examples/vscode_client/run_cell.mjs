// Starts a kernel through a Jupyter gateway with @jupyterlab/services, as VS Code's
// Jupyter extension does for a remote server, runs one cell and shuts the kernel down.
//
// Usage: node run_cell.mjs GATEWAY_URL TOKEN KERNELSPEC [CODE]
// Prints one JSON line: the kernelspec names, the kernel id, the cell's status and stdout.
// Exits 1 with the error on stderr when any step fails.
import { KernelManager, KernelSpecManager, ServerConnection } from "@jupyterlab/services";
import WebSocket from "ws";

const [baseUrl, token, kernelName, code = "print('hello from Slurm')"] = process.argv.slice(2);
if (!baseUrl || !kernelName) {
  console.error("usage: node run_cell.mjs GATEWAY_URL TOKEN KERNELSPEC [CODE]");
  process.exit(2);
}

const serverSettings = ServerConnection.makeSettings({
  baseUrl,
  wsUrl: baseUrl.replace(/^http/, "ws"),
  token,
  appendToken: true,
  WebSocket,
  fetch,
  Request,
  Headers,
});

async function main() {
  const specs = new KernelSpecManager({ serverSettings });
  await specs.ready;
  const names = Object.keys(specs.specs?.kernelspecs ?? {});
  if (!names.includes(kernelName)) {
    throw new Error(`kernelspec ${kernelName} not found on the gateway; it has ${names.join(", ")}`);
  }

  const kernels = new KernelManager({ serverSettings });
  await kernels.ready;
  const kernel = await kernels.startNew({ name: kernelName });
  try {
    let stdout = "";
    const future = kernel.requestExecute({ code });
    future.onIOPub = (message) => {
      if (message.header.msg_type === "stream" && message.content.name === "stdout") {
        stdout += message.content.text;
      }
    };
    const reply = await future.done;
    console.log(JSON.stringify({ kernelspecs: names, kernel_id: kernel.id, status: reply.content.status, stdout }));
  } finally {
    await kernel.shutdown();
    kernels.dispose();
    specs.dispose();
  }
}

// The managers keep polling timers alive after dispose, so exit explicitly.
main().then(
  () => process.exit(0),
  (error) => {
    const status = error?.response ? ` (HTTP ${error.response.status} ${error.response.statusText})` : "";
    console.error(`run_cell.mjs failed${status}: ${error?.message || error}`);
    process.exit(1);
  },
);
