// The reconciler's right to manage role assignments on one subscription: a custom role with only
// what the app calls (role assignments read/write/delete, role definitions read), assigned with
// the ABAC condition built in main.bicep. Narrower than the built-in Role Based Access Control
// Administrator, which also brings */read and Microsoft.Support/* on the whole scope; a condition
// applies to any role with roleAssignments/write or delete, built-in or custom (Microsoft's
// "Delegate Azure role assignment management to others with conditions").
targetScope = 'subscription'

param reconcilerPrincipalId string
@description('ABAC condition (version 2.0) limiting which role assignments may be created or removed.')
param condition string

// One definition per reconciler identity and scope: role names are unique in the tenant.
resource roleAssignmentManager 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, reconcilerPrincipalId, 'wif-reconciler-role-assignments')
  properties: {
    roleName: 'WIF Reconciler role assignments ${uniqueString(subscription().id, reconcilerPrincipalId)}'
    description: 'WIF Reconciler: read, create and delete role assignments (limited by the ABAC condition of the assignment) and read role definitions.'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.Authorization/roleAssignments/read'
          'Microsoft.Authorization/roleAssignments/write'
          'Microsoft.Authorization/roleAssignments/delete'
          'Microsoft.Authorization/roleDefinitions/read'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [
      subscription().id
    ]
  }
}

resource rbacAdmin 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, reconcilerPrincipalId, roleAssignmentManager.id)
  properties: {
    // The id in the form ARM returns for a custom role (/subscriptions/{id}/providers/...), also
    // for one created at resource-group scope.
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleAssignmentManager.name)
    principalId: reconcilerPrincipalId
    principalType: 'ServicePrincipal'
    description: 'WIF Reconciler: may assign/remove only the roles allowed by policy.yaml, to service principals other than itself'
    condition: condition
    conditionVersion: '2.0'
  }
}
