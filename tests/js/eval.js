// @azure-rest/ai-personalizer's offline evaluation calls (v1.1-preview.3, the client's own
// base URL) as its tests use them: create, wait until final, list, applyFromEvaluation,
// delete. argv: endpoint, a key with the admin scope, the evaluation's start and end
// (ISO-8601), a policy name and its arguments. Prints one JSON object, as rest.js does.
"use strict";
const Personalizer = require("@azure-rest/ai-personalizer").default;
const { AzureKeyCredential } = require("@azure/core-auth");

const [endpoint, adminKey, start, end, policyName, policyArguments] = process.argv.slice(2);
// plain HTTP here, so the documented option that lets a key travel over it
const admin = Personalizer(endpoint, new AzureKeyCredential(adminKey),
                           { allowInsecureConnection: true });
const out = {};

function record(name, response) {
  out[name] = { status: response.status, body: response.body ?? null,
                location: response.headers.location ?? null,
                errorCode: response.headers["x-ms-error-code"] ?? null };
  return response;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  const created = record("create", await admin.path("/evaluations").post({
    body: { name: "from-js", startTime: new Date(start), endTime: new Date(end),
            enableOfflineExperimentation: false,
            policies: [{ name: policyName, arguments: policyArguments }] },
  })).body;
  const deadline = Date.now() + 90000;
  let evaluation;
  do {
    await sleep(200);
    evaluation = record("get",
                        await admin.path("/evaluations/{evaluationId}", created.id).get()).body;
  } while (!["completed", "failed", "timeout"].includes(evaluation.status)
           && Date.now() < deadline);
  record("list", await admin.path("/evaluations").get());
  record("apply", await admin.path("/configurations/applyFromEvaluation").post({
    body: { evaluationId: created.id, policyName },
  }));
  record("policy", await admin.path("/configurations/policy").get());
  record("delete", await admin.path("/evaluations/{evaluationId}", created.id).delete());
  record("getDeleted", await admin.path("/evaluations/{evaluationId}", created.id).get());
  process.stdout.write(JSON.stringify(out));
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n${JSON.stringify(out)}\n`);
  process.exit(1);
});
