// Role Based Access Control Administrator for the reconciler on one subscription, limited by
// an ABAC condition to the roles policy.yaml allows (the condition is built in main.bicep).
targetScope = 'subscription'

param reconcilerPrincipalId string
@description('ABAC condition (version 2.0) limiting which roles may be assigned or removed.')
param condition string

var roleBasedAccessControlAdministrator = 'f58310d9-a9f6-439a-9e8d-f62e7b41a168'

resource rbacAdmin 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, reconcilerPrincipalId, roleBasedAccessControlAdministrator)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleBasedAccessControlAdministrator)
    principalId: reconcilerPrincipalId
    principalType: 'ServicePrincipal'
    description: 'WIF Reconciler: may assign/remove only the roles allowed by policy.yaml'
    condition: condition
    conditionVersion: '2.0'
  }
}
