// Entra's diagnostic setting: the AuditLogs category to the Event Hub of events-entra.bicep.
// Tenant scope: deploying it needs a Global Administrator or Security Administrator.
targetScope = 'tenant'

param eventHubAuthorizationRuleId string
param eventHubName string

resource auditToEventHub 'microsoft.aadiam/diagnosticSettings@2017-04-01' = {
  name: 'wif-reconciler-audit'
  properties: {
    eventHubAuthorizationRuleId: eventHubAuthorizationRuleId
    eventHubName: eventHubName
    logs: [
      {
        category: 'AuditLogs'
        enabled: true
      }
    ]
  }
}
