// @azure-rest/ai-personalizer, used as its README and samples show, against the endpoint
// in argv[2]: argv[3] is a key with the admin scope, argv[4] one without, argv[5] the API
// generation ("package": the client's own base URL, /personalizer/v1.1-preview.3;
// "2022-09-01-preview": the client's baseUrl/apiVersion options pointed at
// /personalizer?api-version=2022-09-01-preview). Prints one JSON object: for each call
// its status, the client's isUnexpected verdict, its body (binary bodies as base64) and
// x-ms-error-code, for tests/server/test_personalizer_js.py.
"use strict";
const Personalizer = require("@azure-rest/ai-personalizer").default;
const { isUnexpected } = require("@azure-rest/ai-personalizer");
const { AzureKeyCredential } = require("@azure/core-auth");

const [endpoint, adminKey, userKey, generation] = process.argv.slice(2);
// bandit-serve speaks plain HTTP here; @azure/core-rest-pipeline sends a key over plain
// HTTP only when told to (a documented client option, as Azure's own local tests set it)
const options = { allowInsecureConnection: true,
                  ...(generation === "package" ? {}
                      : { baseUrl: `${endpoint}/personalizer`, apiVersion: generation }) };
const user = Personalizer(endpoint, new AzureKeyCredential(userKey), options);
const admin = Personalizer(endpoint, new AzureKeyCredential(adminKey), options);
const stranger = Personalizer(endpoint, new AzureKeyCredential("not-a-key"), options);

const actions = [0, 1, 2, 3].map((i) => ({
  id: `a${i}`,
  features: [{ kind: String(i), price: i }],
}));
const contextFeatures = [{ user: { device: "ios" } }, { time: "morning" }];
const out = {};

function record(name, response, body = response.body) {
  out[name] = {
    status: response.status,
    // the client's own verdict; it only knows its package's paths (v1.1-preview.3)
    unexpected: generation === "package" ? isUnexpected(response) : null,
    body: body === undefined ? null : body,
    errorCode: response.headers["x-ms-error-code"] ?? null,
    contentType: response.headers["content-type"] ?? null,
  };
  return response;
}

async function bytes(name, pending) { // a binary body, read as the stream it is
  const response = await pending.asNodeStream();
  const chunks = [];
  if (response.body) for await (const chunk of response.body) chunks.push(Buffer.from(chunk));
  const data = Buffer.concat(chunks);
  record(name, response, data.toString("base64"));
  return data;
}

async function main() {
  // single slot: rank (deferred), activate, reward
  record("rank", await user.path("/rank").post({
    body: { contextFeatures, actions, eventId: "js-rank-1", deferActivation: true },
  }));
  record("activate", await user.path("/events/{eventId}/activate", "js-rank-1").post());
  record("reward", await user.path("/events/{eventId}/reward", "js-rank-1").post({
    body: { value: 0.75 },
  }));
  record("rankExcluded", await user.path("/rank").post({
    body: { contextFeatures, actions, excludedActions: ["a2"] },
  }));
  record("rankNoActions", await user.path("/rank").post({ body: { contextFeatures, actions: [] } }));
  // multi-slot: rank, reward per slot, activate
  record("multiRank", await user.path("/multislot/rank").post({
    body: {
      contextFeatures, actions, eventId: "js-multi-1", deferActivation: true,
      slots: [{ id: "hero", baselineAction: "a0", features: [{ size: "large" }] },
              { id: "side", baselineAction: "a1", excludedActions: ["a3"] }],
    },
  }));
  record("multiReward", await user.path("/multislot/events/{eventId}/reward", "js-multi-1").post({
    body: { reward: [{ slotId: "hero", value: 1 }, { slotId: "side", value: 0 }] },
  }));
  record("multiActivate",
         await user.path("/multislot/events/{eventId}/activate", "js-multi-1").post());

  // service configuration: get, update, get, a refused update
  const conf = record("getService", await admin.path("/configurations/service").get()).body;
  record("putService", await admin.path("/configurations/service").put({
    body: { ...conf, explorationPercentage: 0.5, rewardWaitTime: "PT5M", defaultReward: 0.1,
            rewardAggregation: "average",
            logRetentionDays: 30 },
  }));
  record("getServiceAfter", await admin.path("/configurations/service").get());
  record("putServiceBad", await admin.path("/configurations/service").put({
    body: { ...conf, explorationPercentage: 2 },
  }));
  // learning settings: update, get, reset
  record("putPolicy", await admin.path("/configurations/policy").put({
    body: { name: "from-js", arguments: "--cb_explore_adf --epsilon 0.3 --power_t 0 -l 0.01 -q ::" },
  }));
  record("getPolicy", await admin.path("/configurations/policy").get());
  record("resetPolicy", await admin.path("/configurations/policy").delete());
  // model: properties, export (signed and not), import, reset
  record("modelProperties", await admin.path("/model/properties").get());
  const signed = await bytes("exportSigned",
                             admin.path("/model").get({ queryParameters: { signed: true } }));
  await bytes("export", admin.path("/model").get());
  record("import", await admin.path("/model").put({ body: signed }));
  record("modelPropertiesAfterImport", await admin.path("/model/properties").get());
  record("importGarbage", await admin.path("/model").put({
    body: new Uint8Array(Buffer.from("PK\u0003\u0004 not a model")),
    contentType: "application/octet-stream",
  }));
  record("resetModel", await admin.path("/model").delete());
  // logs: properties (none joined yet), delete
  record("logProperties", await admin.path("/logs/properties").get());
  record("deleteLogs", await admin.path("/logs").delete());
  // keys: one without the admin scope, and an unknown one
  record("userOnAdminRoute", await user.path("/configurations/policy").get());
  record("unknownKey", await stranger.path("/rank").post({ body: { contextFeatures, actions } }));
  process.stdout.write(JSON.stringify(out));
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n${JSON.stringify(out)}\n`);
  process.exit(1);
});
