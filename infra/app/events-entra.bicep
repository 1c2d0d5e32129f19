// Optional (entraAuditEvents): Entra audit logs as drift events. Entra's diagnostic setting
// (events-entra-diagnostic.bicep, tenant scope: it needs a Global or Security Administrator)
// streams the AuditLogs category to the hub `insights-logs-auditlogs`; the Function App's
// `entra_audit` trigger reads it with the reconciler's identity (Data Receiver on that hub).
// Latency is minutes and not guaranteed (docs/events.md); the sweep stays the backstop.
param name string
param location string
param tags object
param reconcilerPrincipalId string

var eventHubsDataReceiver = 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
var hubName = 'insights-logs-auditlogs'

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
    capacity: 1
  }
  properties: {
    // Entra's diagnostic setting streams only with an authorization rule (SAS): local auth stays on
    // for that one Send rule. The app reads with its identity.
    disableLocalAuth: false
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource hub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: namespace
  name: hubName
  properties: {
    partitionCount: 2
    messageRetentionInDays: 1
  }
}

// Send only: what the diagnostic setting needs, nothing that can read or manage.
resource diagnosticSender 'Microsoft.EventHub/namespaces/authorizationRules@2024-01-01' = {
  parent: namespace
  name: 'entra-diagnostic-send'
  properties: {
    rights: [
      'Send'
    ]
  }
}

resource reconcilerReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hub.id, reconcilerPrincipalId, eventHubsDataReceiver)
  scope: hub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventHubsDataReceiver)
    principalId: reconcilerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
output hubName string = hub.name
output authorizationRuleId string = diagnosticSender.id
