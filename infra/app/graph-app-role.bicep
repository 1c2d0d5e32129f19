// Optional: grants the reconciler's managed identity the Microsoft Graph application
// permission Application.ReadWrite.OwnedBy, so it can create app registrations and manage
// (federated credentials of) only the apps it owns. Uses the Microsoft Graph Bicep extension
// (infra/bicepconfig.json). The deployer needs an Entra role that may grant app roles:
// Privileged Role Administrator (or Global Administrator); see docs/deploy.md.
extension microsoftGraphV1

@description('Principal (object) id of the reconciler\'s managed identity.')
param reconcilerPrincipalId string

var microsoftGraphAppId = '00000003-0000-0000-c000-000000000000'
var applicationReadWriteOwnedBy = '18a4783c-866b-4cc7-a460-3d5e5662c884'

resource microsoftGraph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: microsoftGraphAppId
}

resource ownedByGrant 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  appRoleId: applicationReadWriteOwnedBy
  principalId: reconcilerPrincipalId
  resourceId: microsoftGraph.id
}
