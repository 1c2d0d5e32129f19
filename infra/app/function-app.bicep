// The Function App on Flex Consumption (FC1), Python 3.11, running as the user-assigned
// identity. Every connection is identity-based: the app settings below carry account and
// namespace names and the identity's client id, never a key. The names match
// local.settings.sample.json (tests/infra checks it, with infra/local-only-settings.json).
param name string
param planName string
param location string
param tags object
@description('Resource id of the user-assigned identity the app runs as.')
param identityId string
@description('Client id of that identity (AZURE_CLIENT_ID and the __clientId settings).')
param identityClientId string
param storageAccountName string
param blobEndpoint string
param tableEndpoint string
param deploymentContainerName string
param serviceBusFullyQualifiedNamespace string
param applicationInsightsConnectionString string
@description('NCRONTAB schedule of the drift sweep.')
param driftSchedule string
@description('The reconciler\'s own identity ids (comma-separated): events they caused are ignored.')
param reconcilerIdentities string
@description('The Event Hub of Entra audit logs, and its namespace; empty: no entra_audit trigger.')
param entraAuditHub string = ''
param entraAuditNamespace string = ''
@description('Azure cloud the reconciler talks to (Graph and ARM endpoints): by default the one deployed to.')
param cloud string = environment().name
@description('Flex allows 40 to 1000; the lowest keeps parallel Graph, ARM and Azure DevOps calls under their throttling limits.')
param maximumInstanceCount int = 40
param instanceMemoryMB int = 2048

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  //checkov:skip=CKV_AZURE_225: Zone redundancy on Flex Consumption is available only in some regions; work waits durably in Service Bus, so a zone outage delays reconciles without losing them. Set zoneRedundant where the region offers it.
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true // Linux
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  //checkov:skip=CKV_AZURE_222: No virtual network in this template; the HTTP API is protected by function keys or App Service authentication (docs/deploy.md), and Service Bus triggers need no inbound access.
  //checkov:skip=CKV_AZURE_17: Callers of the HTTP API authenticate with Entra ID (App Service authentication) or function keys; mutual TLS would make every operator and CI job manage client certificates, the kind of secret this design avoids.
  //checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero per trigger; there is no instance count to pin (always-ready instances are an optional cost decision).
  //checkov:skip=CKV_AZURE_213: Flex Consumption scales to zero, so platform health-check probes do not apply; the app serves GET /api/health for operators and uptime tests.
  //checkov:skip=CKV_AZURE_153: Rule for deployment slots; Flex Consumption has no slots.
  //checkov:skip=CKV_AZURE_78: Flex Consumption has no FTP(S) deployment endpoint and ARM rejects siteConfig.ftpsState on it ("Flex Consumption plan deprecations"), so there is nothing to disable.
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'reconciler' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    functionAppConfig: {
      // Flex pulls the package from blob storage with the app's identity (no SAS URL).
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      // Flex sets the worker runtime here, not with FUNCTIONS_WORKER_RUNTIME.
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
    siteConfig: {
      // No ftpsState: Flex Consumption has no FTP(S) endpoint and ARM rejects the property there
      // (Functions app settings reference, "Flex Consumption plan deprecations").
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      appSettings: [
        // Host storage (timer locks, host state) through the identity.
        {
          name: 'AzureWebJobsStorage__accountName'
          value: storageAccountName
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identityClientId
        }
        // The connection named "ServiceBusConnection" in the triggers and the sender.
        {
          name: 'ServiceBusConnection__fullyQualifiedNamespace'
          value: serviceBusFullyQualifiedNamespace
        }
        {
          name: 'ServiceBusConnection__credential'
          value: 'managedidentity'
        }
        {
          name: 'ServiceBusConnection__clientId'
          value: identityClientId
        }
        // azure-identity's DefaultAzureCredential/ManagedIdentityCredential pick this identity.
        {
          name: 'AZURE_CLIENT_ID'
          value: identityClientId
        }
        {
          name: 'WIF_TABLE_ENDPOINT'
          value: tableEndpoint
        }
        {
          name: 'WIF_POLICY_FILE'
          value: 'policy.yaml'
        }
        {
          name: 'WIF_CLOUD'
          value: cloud
        }
        {
          name: 'DRIFT_SCHEDULE'
          value: driftSchedule
        }
        // The sweep reports orphans (docs/operations.md, "Finding what deleted configs left").
        {
          name: 'WIF_SWEEP_FIND_ORPHANS'
          value: 'true'
        }
        // Drift events (docs/events.md).
        {
          name: 'WIF_RECONCILER_IDENTITIES'
          value: reconcilerIdentities
        }
        {
          name: 'EVENT_COALESCE_SECONDS'
          value: '1'
        }
        {
          name: 'ENTRA_AUDIT_HUB'
          value: entraAuditHub
        }
        {
          name: 'EntraAuditConnection__fullyQualifiedNamespace'
          value: entraAuditNamespace
        }
        {
          name: 'EntraAuditConnection__credential'
          value: 'managedidentity'
        }
        {
          name: 'EntraAuditConnection__clientId'
          value: identityClientId
        }
        // The budgets the engine paces itself under (README, "Pacing"): Azure's documented limits for
        // one identity; raise WIF_GRAPH_UNITS_PER_10S to 5000 or 8000 in a bigger tenant.
        {
          name: 'WIF_GRAPH_UNITS_PER_10S'
          value: '3500'
        }
        {
          name: 'WIF_GRAPH_WRITES_PER_150S'
          value: '3000'
        }
        {
          name: 'WIF_ARM_READS_BURST'
          value: '250'
        }
        {
          name: 'WIF_ARM_READS_PER_SECOND'
          value: '25'
        }
        {
          name: 'WIF_ARM_WRITES_BURST'
          value: '200'
        }
        {
          name: 'WIF_ARM_WRITES_PER_SECOND'
          value: '10'
        }
        {
          name: 'WIF_ADO_REQUESTS_PER_5MIN'
          value: '4000'
        }
        // The connection string only locates the component; with local auth off, telemetry
        // is accepted only with the Entra token named by the authentication string.
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: applicationInsightsConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'Authorization=AAD;ClientId=${identityClientId}'
        }
        // With host.json's telemetryMode OpenTelemetry: the Python worker configures
        // azure-monitor-opentelemetry itself and exports the worker's traces, metrics and logs
        // (reconciler/app/telemetry.py; learn.microsoft.com/azure/azure-functions/opentelemetry-howto).
        {
          name: 'PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY'
          value: 'true'
        }
      ]
    }
  }
}

output name string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName
